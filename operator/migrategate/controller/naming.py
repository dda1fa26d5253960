"""Job names: `<migration>-<content hash>[-plan|-contract][-<attempt>]`, at most 63 characters.

The hash covers every spec field that changes what the Job runs, plus the
rerun annotation's token. Fields that only steer the operator (retry,
historyLimit, suspend, gate, approval) are left out, so editing them starts nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from migrategate.api.models import DatabaseMigrationSpec

MAX_NAME = 63  # Job names end up in the pods' job-name label, which caps at 63
HASH_CHARS = 10
# approval and contract.policy only decide whether a person looks first: what runs is the same.
# contract.branch is content: it decides which revisions each phase runs.
_NOT_CONTENT: dict[str, Any] = {
    "retry": True,
    "history_limit": True,
    "suspend": True,
    "gate": True,
    "approval": True,
    "contract": {"policy"},
}


def content_hash(spec: DatabaseMigrationSpec, rerun_token: str | None = None) -> str:
    """A short stable hash of what a Job for `spec` runs."""
    # exclude_defaults: a default spelled out or left implicit hashes the same,
    # and a field added later with a default does not rerun every migration.
    content: dict[str, Any] = spec.model_dump(
        mode="json", by_alias=True, exclude=_NOT_CONTENT, exclude_defaults=True
    )
    if content.get("contract") == {}:  # only its policy was set: same content as without
        del content["contract"]
    if rerun_token:
        content["rerun"] = rerun_token
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:HASH_CHARS]


def job_name(migration: str, chash: str, attempt: int = 1, kind: str | None = None) -> str:
    """The Job of `attempt` (1-based) for this content; retries get a numeric suffix.

    A plan Job (spec.approval) has `-plan` after the hash and shares the content's attempts;
    a contract Job has `-contract` and counts its own attempts.
    """
    suffix = f"-{chash}" + (f"-{kind}" if kind else "") + (f"-{attempt}" if attempt > 1 else "")
    stem = migration[: MAX_NAME - len(suffix)].rstrip("-.")
    return stem + suffix
