"""Redacting and truncating messages before they go into status or Events.

Pattern-based: whatever looks like a password is replaced, since the operator never
knows the real one (the runner masks the exact spellings it knows, in its own module)."""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (the password may hold anything but @/)
_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
# libpq key=value and query forms: password=..., passwd=..., pwd=...
_KV_PASSWORD = re.compile(
    r"(?i)(?P<pre>\b(?:password|passwd|pwd)\s*[=:]\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^\s&;,]+)"
)


def redact(text: str) -> str:
    """Replace anything that looks like a password with ***."""
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)
    return _KV_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)] + "..."


def clean(text: str | None, limit: int = 1024) -> str:
    """Masked, single-spaced and truncated: safe for status.message and Events."""
    if not text:
        return ""
    return truncate(" ".join(redact(text).split()), limit)
