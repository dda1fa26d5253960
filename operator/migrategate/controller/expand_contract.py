"""Expand and contract (issue 12): what a runner result says about the two phases. No I/O.

The expand Job's result tells whether the image's scripts have a contract branch
(runner/contract.py PhaseKey). migration_decision.py then waits for the rollout
(rollout.py) and runs the contract Job; this module reads results, spells
status.phases, and recognises a rollback past a contract phase that already ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrategate.api import constants as c
from migrategate.api.models import PhaseState
from migrategate.runner.contract import Phase, PhaseKey, ResultKey


@dataclass(frozen=True)
class Split:
    """The phases of an image whose scripts have a contract branch."""

    expand_heads: tuple[str, ...]
    contract_heads: tuple[str, ...]


def split_of(result: Mapping[str, Any] | None) -> Split | None:
    """The two phases when this result is an expand run of scripts with a contract branch.

    None for scripts without one, and for a run of phase all (an explicit target): those
    are a single phase, done when their Job is.
    """
    res = result or {}
    if not res.get(PhaseKey.HAS_CONTRACT_BRANCH) or res.get(PhaseKey.PHASE) != Phase.EXPAND.value:
        return None
    return Split(
        expand_heads=_strings(res.get(PhaseKey.EXPAND_HEADS)),
        contract_heads=_strings(res.get(PhaseKey.CONTRACT_HEADS)),
    )


def phase_entry(
    state: PhaseState,
    job_name: str | None = None,
    targets: Sequence[str] | None = None,
    applied: Sequence[str] | None = None,
    finished_at: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """One of status.phases' entries, without the fields that are unknown."""
    entry = {
        "state": state.value,
        "jobName": job_name,
        "targetRevisions": list(targets) if targets is not None else None,
        "appliedRevisions": list(applied) if applied is not None else None,
        "finishedAt": finished_at,
        "message": message,
    }
    return {k: v for k, v in entry.items() if v is not None}


def applied_of(result: Mapping[str, Any] | None) -> list[str]:
    return list(_strings((result or {}).get(ResultKey.APPLIED_REVISIONS)))


def contract_approval(annotations: Mapping[str, Any] | None) -> str | None:
    """The content hash migrategate.io/contract names (trimmed, lower case), or None."""
    value = str((annotations or {}).get(c.ANNOTATION_CONTRACT) or "").strip().lower()
    return value or None


def approve_contract_command(namespace: str, name: str, content_hash: str) -> str:
    return (
        f"kubectl annotate -n {namespace} dbm/{name} "
        f"{c.ANNOTATION_CONTRACT}={content_hash} --overwrite"
    )


def past_contract(
    contracted: Mapping[str, Any] | None, image: str, result: Mapping[str, Any] | None
) -> str | None:
    """A warning when `image` is a rollback past the last contract phase, else None.

    The runner's result names the database's heads that the image's scripts do not know
    (unknownRevisions: the database is ahead, whether --if-ahead let it pass or refused).
    When those include the contract revisions recorded in status.contracted, the image's code
    may need what that contract phase dropped.
    """
    if not contracted or contracted.get("image") == image:
        return None
    unknown_to_image = set(_strings((result or {}).get(ResultKey.UNKNOWN_REVISIONS)))
    unknown = [r for r in _strings(contracted.get("revisions")) if r in unknown_to_image]
    if not unknown:
        return None
    return (
        f"rollback past a contract phase: {image} does not know contract revision(s) "
        f"{', '.join(unknown)}, which ran for {contracted.get('image')} and dropped what older "
        "code may still use; roll forward, or restore the dropped objects by hand"
    )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()
