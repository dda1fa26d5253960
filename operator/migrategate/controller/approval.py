"""Plans and approvals (spec.approval): the plan Job's result in, status.plan and a verdict out.

No I/O. migration_decision.py decides when to plan and when to migrate; this module
says what a plan holds, whether the policy holds it for a person, and whether the
`migrategate.io/approve` annotation approves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrategate.api import constants as c
from migrategate.api.models import ApprovalSpec
from migrategate.runner.contract import (
    SEVERITIES,
    FindingKey,
    LintStatus,
    Outcome,
    PlanKey,
    ResultKey,
    UnrenderableKey,
)

MAX_FINDINGS = 10  # status.plan keeps this many findings (the counts stay exact)
MAX_TEXT = 256


def logs_command(namespace: str, job_name: str) -> str:
    """The command a reviewer pastes to read the plan's SQL."""
    return f"kubectl logs -n {namespace} job/{job_name} -c {c.CONTAINER_NAME}"


def approve_command(namespace: str, name: str, plan_hash: str) -> str:
    return (
        f"kubectl annotate -n {namespace} dbm/{name} {c.ANNOTATION_APPROVE}={plan_hash} --overwrite"
    )


def approval_of(annotations: Mapping[str, Any] | None) -> str | None:
    """The planHash the annotation approves (trimmed, lower case), or None."""
    value = str((annotations or {}).get(c.ANNOTATION_APPROVE) or "").strip().lower()
    return value or None


def plan_hash(result: Mapping[str, Any] | None) -> str | None:
    value = (result or {}).get(PlanKey.PLAN_HASH)
    return str(value) if value else None


def plan_status(
    result: Mapping[str, Any] | None, namespace: str, job_name: str, content_hash: str
) -> dict[str, Any]:
    """status.plan from a plan Job's result (None while it runs: only where it is)."""
    res = result or {}
    out: dict[str, Any] = {
        "contentHash": content_hash,
        "jobName": job_name,
        "logsCommand": logs_command(namespace, job_name),
    }
    if not plan_hash(res):
        return out
    counts = res.get(PlanKey.FINDING_COUNTS) or {}
    out.update(
        {
            "hash": plan_hash(res),
            "revisions": [str(r) for r in res.get(PlanKey.PENDING_REVISIONS) or []],
            "statementCount": _int(res.get(PlanKey.STATEMENT_COUNT)),
            "findingCounts": {s: _int(counts.get(s)) for s in SEVERITIES},
            "findings": [_finding(f) for f in (res.get(PlanKey.FINDINGS) or [])[:MAX_FINDINGS]],
            "unrenderable": [
                {
                    "revision": str(u.get(UnrenderableKey.REVISION) or ""),
                    "reason": _clip(u.get(UnrenderableKey.REASON)),
                }
                for u in res.get(PlanKey.UNRENDERABLE) or []
            ],
            "lintStatus": res.get(PlanKey.LINT_STATUS) or LintStatus.SKIPPED.value,
            "linter": res.get(PlanKey.LINTER),
            "lintReason": res.get(PlanKey.LINT_REASON),
        }
    )
    return {k: v for k, v in out.items() if v is not None}


def why_approval(approval: ApprovalSpec, result: Mapping[str, Any] | None) -> str | None:
    """Why the policy holds this plan for a person; None when it may run unattended."""
    res = result or {}
    if approval.policy == "Auto":
        return None
    if res.get(ResultKey.OUTCOME) != Outcome.PLANNED.value:
        return None  # nothing pending: nothing to approve
    if approval.policy == "Always":
        return "approval policy Always"
    reasons = []
    counts = res.get(PlanKey.FINDING_COUNTS) or {}
    floor = SEVERITIES.index(str(approval.min_severity))
    for severity in reversed(SEVERITIES[floor:]):
        if _int(counts.get(severity)):
            reasons.append(f"{_int(counts.get(severity))} {severity} finding(s)")
    unrenderable = _int(res.get(PlanKey.UNRENDERABLE_COUNT)) or len(
        res.get(PlanKey.UNRENDERABLE) or []
    )
    if unrenderable:
        reasons.append(f"{unrenderable} revision(s) not renderable offline")
    lint = res.get(PlanKey.LINT_STATUS)
    if lint != LintStatus.LINTED.value:
        reason = res.get(PlanKey.LINT_REASON)
        reasons.append(
            f"lint {str(lint or 'unknown').lower()}" + (f" ({reason})" if reason else "")
        )
    return ", ".join(reasons) or None


def awaiting_message(namespace: str, name: str, job_name: str, phash: str, why: str) -> str:
    return _clip(
        f"plan {phash[:12]} needs approval ({why}); read its SQL: "
        f"{logs_command(namespace, job_name)}; approve: {approve_command(namespace, name, phash)}",
        limit=10**4,
    )


def ignored_message(value: str, phash: str) -> str:
    return (
        f"ignored {c.ANNOTATION_APPROVE}={value[:64]}: it names no current plan; the plan"
        f" awaiting approval is {phash} (the database moved on, the image changed, or it was"
        " mistyped)"
    )


def stale_refusal(result: Mapping[str, Any] | None) -> bool:
    """The runner refused to apply an approved plan that no longer matches (exit 2)."""
    return bool((result or {}).get(ResultKey.STALE_PLAN))


def _finding(raw: Mapping[str, Any]) -> dict[str, Any]:
    severity = str(raw.get(FindingKey.SEVERITY) or "")
    return {
        "revision": str(raw.get(FindingKey.REVISION) or ""),
        "rule": str(raw.get(FindingKey.RULE) or ""),
        "severity": severity if severity in SEVERITIES else SEVERITIES[-1],
        "message": _clip(raw.get(FindingKey.MESSAGE)),
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _clip(value: Any, limit: int = MAX_TEXT) -> str:
    text = str(value or "")
    return text if len(text) <= limit else text[: limit - 3] + "..."
