"""kstatus conditions and the status diff. No I/O.

The full condition list is computed every time; a condition keeps its
lastTransitionTime while its status stays the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from migrategate.api import constants as c
from migrategate.api.models import Phase


@dataclass(frozen=True)
class Standing:
    """Where a DatabaseMigration stands, before it is spelled as conditions."""

    phase: Phase
    reason: str
    message: str = ""
    ready: bool = False
    reconciling: bool = False
    stalled: bool = False


def conditions(
    state: Standing,
    generation: int | None,
    previous: list[Mapping[str, Any]] | None,
    now: str,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for `state`."""
    before = {cond.get("type"): cond for cond in previous or []}
    wanted = (
        (c.CONDITION_READY, state.ready),
        (c.CONDITION_RECONCILING, state.reconciling),
        (c.CONDITION_STALLED, state.stalled),
    )
    out = []
    for kind, value in wanted:
        status = "True" if value else "False"
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": state.reason,
                "message": state.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return out


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (None deletes).

    Objects on both sides are diffed key by key: a merge patch merges them, so a key the
    new object lacks (status.phases.contract.message, say) must be deleted explicitly.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            nested = diff(before, value)
            if nested:
                patch[key] = nested
        elif before != value:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
