"""The keys ``migrategate plan`` adds to the JSON result, fitted into the termination message.

Kubernetes keeps at most ``contract.RESULT_MAX_BYTES`` of a termination message, so
the lists are clipped, least important first: low-severity findings, then long
reasons, then whole entries. The counts (``findingCounts``, ``unrenderableCount``)
and ``planHash`` are never clipped, so a decision made on them holds however many
entries had to go. Stdlib only, Python >= 3.9.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .contract import (
    RESULT_MAX_BYTES,
    SEVERITIES,
    FindingKey,
    LintStatus,
    PlanKey,
    ResultKey,
    UnrenderableKey,
)
from .lint import Finding, clip, severity_rank
from .masking import Masker

JSONObject = dict[str, Any]  # a result, or part of one, before json.dumps

MAX_REASON_CHARS = 300
SHORT_REASON_CHARS = 80
MAX_REVISIONS_LISTED = 20  # in each revision list of a result
SHORT_MESSAGE_CHARS = 256


@dataclass
class PlanResult:
    """What a plan found, before clipping."""

    plan_hash: str = ""
    pending: list[str] = field(default_factory=list)  # revision ids, oldest first
    statement_count: int = 0
    findings: list[Finding] = field(default_factory=list)
    unrenderable: list[tuple[str, str]] = field(default_factory=list)  # (revision, reason)
    lint_status: str = LintStatus.SKIPPED.value
    linter: Optional[str] = None
    lint_reason: Optional[str] = None

    def counts(self) -> dict[str, int]:
        """{severity: number of findings}, every severity present."""
        counts = {severity: 0 for severity in SEVERITIES}
        for finding in self.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        return counts

    def fit(self, base: JSONObject, masker: Masker, limit: int = RESULT_MAX_BYTES) -> str:
        """``base`` (the common result keys) plus the plan's, as JSON of at most ``limit`` bytes."""
        data = dict(base)
        data.update(plan_keys(self, masker))
        return fit_json(data, limit)


def finding_entry(finding: Finding) -> dict[str, str]:
    return {
        FindingKey.REVISION: finding.revision,
        FindingKey.RULE: finding.rule,
        FindingKey.SEVERITY: finding.severity,
        FindingKey.MESSAGE: finding.message,
    }


def most_severe_first(findings: Iterable[Finding]) -> list[Finding]:
    """Findings ordered high to low, revision order kept within a severity."""
    return sorted(findings, key=lambda f: -severity_rank(f.severity))


def clip_revisions(revisions: Sequence[str]) -> list[str]:
    """At most MAX_REVISIONS_LISTED revision ids: the first ones and a "... N more" entry."""
    if len(revisions) <= MAX_REVISIONS_LISTED:
        return list(revisions)
    kept = MAX_REVISIONS_LISTED - 1
    return list(revisions[:kept]) + [f"... {len(revisions) - kept} more"]


def plan_keys(plan: PlanResult, masker: Masker) -> JSONObject:
    """The plan's result keys (``contract.PlanKey``), masked, before fitting."""

    def clean(text: Optional[str], limit: int) -> Optional[str]:
        return None if text is None else clip(" ".join(masker(text).split()), limit)

    return {
        PlanKey.PLAN_HASH: plan.plan_hash,
        PlanKey.PENDING_REVISIONS: clip_revisions(plan.pending),
        PlanKey.STATEMENT_COUNT: plan.statement_count,
        PlanKey.FINDING_COUNTS: plan.counts(),
        PlanKey.FINDINGS: [finding_entry(f) for f in most_severe_first(plan.findings)],
        PlanKey.UNRENDERABLE_COUNT: len(plan.unrenderable),
        PlanKey.UNRENDERABLE: [
            {UnrenderableKey.REVISION: rev, UnrenderableKey.REASON: clean(reason, MAX_REASON_CHARS)}
            for rev, reason in plan.unrenderable
        ],
        PlanKey.LINT_STATUS: plan.lint_status,
        PlanKey.LINTER: plan.linter,
        PlanKey.LINT_REASON: clean(plan.lint_reason, MAX_REASON_CHARS),
    }


def _encode(data: JSONObject) -> str:
    return json.dumps(data, separators=(",", ":"))


def _size(data: JSONObject) -> int:
    return len(_encode(data).encode())


def _drop_last(key: str) -> Callable[[JSONObject], bool]:
    """A step that drops the last entry of the list under ``key`` (False once there is none)."""

    def step(data: JSONObject) -> bool:
        if not data.get(key):
            return False
        data[key] = data[key][:-1]
        return True

    return step


def _shorten_reasons(data: JSONObject) -> bool:
    changed = False
    for entry in data[PlanKey.UNRENDERABLE]:
        reason = entry[UnrenderableKey.REASON] or ""
        if len(reason) > SHORT_REASON_CHARS:
            entry[UnrenderableKey.REASON] = clip(reason, SHORT_REASON_CHARS)
            changed = True
    reason = data.get(PlanKey.LINT_REASON) or ""
    if len(reason) > SHORT_REASON_CHARS:
        data[PlanKey.LINT_REASON] = clip(reason, SHORT_REASON_CHARS)
        changed = True
    return changed


def _trim_message(data: JSONObject) -> bool:
    message = data.get(ResultKey.MESSAGE) or ""
    if len(message) <= SHORT_MESSAGE_CHARS:
        return False
    data[ResultKey.MESSAGE] = clip(message, SHORT_MESSAGE_CHARS)
    return True


def _halve_message(data: JSONObject) -> bool:
    message = data.get(ResultKey.MESSAGE) or ""
    if len(message) <= 20:
        return False
    data[ResultKey.MESSAGE] = clip(message, len(message) // 2)
    return True


def _shorten_pending(data: JSONObject) -> bool:
    pending = data[PlanKey.PENDING_REVISIONS]
    if len(pending) <= 2:
        return False
    keep = max(len(pending) // 2, 1)
    more = len(pending) - keep
    if pending[-1].startswith("... "):
        more += int(pending[-1].split()[1]) - 1
    data[PlanKey.PENDING_REVISIONS] = pending[:keep] + [f"... {more} more"]
    return True


# Least important first: each step makes the JSON smaller or reports it cannot.
SHRINK_STEPS: tuple[Callable[[JSONObject], bool], ...] = (
    _shorten_reasons,
    _drop_last(ResultKey.WARNINGS),  # stdout has them all
    _trim_message,
    _drop_last(PlanKey.FINDINGS),  # findings are most severe first, so the lowest go first
    _halve_message,
    _drop_last(PlanKey.UNRENDERABLE),
    _shorten_pending,
)


def fit_json(data: JSONObject, limit: int = RESULT_MAX_BYTES) -> str:
    """JSON of ``data`` under ``limit`` bytes, shrinking it by SHRINK_STEPS in order."""
    steps = list(SHRINK_STEPS)
    while _size(data) > limit and steps:
        if not steps[0](data):
            steps.pop(0)
    return _encode(data)
