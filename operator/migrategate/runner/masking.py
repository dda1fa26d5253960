"""Keep the database password out of everything the runner prints or reports.

The runner knows the password (it is in the URL), so it masks the exact spellings it may
take in text: as written in the URL, decoded, and encoded the ways drivers and SQLAlchemy
encode it. (The operator never sees the password, so it redacts by pattern instead:
``controller/redaction.py``.) Stdlib and SQLAlchemy only, Python >= 3.9; SQLAlchemy is
imported only by ``Masker.for_url``, so the quick path (``quick.py``) never loads it.
"""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional
from urllib.parse import quote, quote_plus, unquote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

MASK = "***"

# Shorter secrets are masked only as whole words: replacing every "p" of a
# one-letter password would garble the message and hide nothing worth hiding.
MIN_SUBSTRING_SECRET = 4

_USERINFO = re.compile(r"://([^/?#]*)@")


def spellings_of(url: Optional["URL"]) -> list[str]:
    """Every spelling of the URL's password that could leak into text (raw and encoded)."""
    if url is None or not url.password:
        return []
    password = str(url.password)
    spellings = {password, quote(password, safe=""), quote_plus(password), quote(password)}
    spellings.add(_sqlalchemy_spelling(password))
    return sorted(spellings - {""}, key=len, reverse=True)


def _sqlalchemy_spelling(password: str) -> str:
    """The password as SQLAlchemy renders it in a URL (it escapes fewer characters)."""
    from sqlalchemy.engine import URL

    rendered = URL.create("postgresql", username="u", password=password, host="h")
    text = rendered.render_as_string(hide_password=False)
    return text[len("postgresql://u:") : -len("@h")]


def spellings_in_text(raw: str) -> list[str]:
    """Best-effort password spellings from a URL string that may not even parse."""
    match = _USERINFO.search(raw or "")
    if not match or ":" not in match.group(1):
        return []
    password = match.group(1).split(":", 1)[1]
    spellings = {password, unquote(password)} - {""}
    return sorted(spellings, key=len, reverse=True)


@dataclass(frozen=True)
class Masker:
    """Masks one URL's password; built once per run, before anything can fail."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def for_url(cls, raw: str) -> "Masker":
        """The masker for the URL string ``raw``, whether or not it parses."""
        from sqlalchemy.engine import make_url

        try:
            parsed: Optional[URL] = make_url(raw.strip())
        except Exception:  # unparseable: what the text itself shows is all there is
            parsed = None
        found = set(spellings_of(parsed)) | set(spellings_in_text(raw))
        return cls(tuple(sorted(found, key=len, reverse=True)))

    @classmethod
    def for_text(cls, raw: str) -> "Masker":
        """The masker for what the URL string ``raw`` itself shows (the quick path's: it prints
        nothing that SQLAlchemy or a driver rendered)."""
        return cls(tuple(spellings_in_text(raw)))

    def __call__(self, text: str) -> str:
        """``text`` with every spelling of the password replaced by ***."""
        for secret in self.secrets:
            if len(secret) >= MIN_SUBSTRING_SECRET:
                text = text.replace(secret, MASK)
            elif secret:
                word = r"(?<![A-Za-z0-9])" + re.escape(secret) + r"(?![A-Za-z0-9])"
                text = re.sub(word, MASK, text)
        return text
