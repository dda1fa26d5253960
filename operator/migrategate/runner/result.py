"""The JSON result a command leaves in --result-file (a Job's termination message)."""

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from .contract import RESULT_MAX_BYTES, PlanKey, ResultKey
from .urls import mask

MAX_MESSAGE_CHARS = 1024
MAX_LIST_ITEMS = 20


@dataclass
class Report:
    """What a command learned so far; the CLI turns it into the result, on success or failure."""

    outcome: str = ""
    exit_code: int = 0
    message: str = ""
    from_revisions: list = field(default_factory=list)
    to_revisions: list = field(default_factory=list)
    target_revisions: list = field(default_factory=list)
    applied_revisions: list = field(default_factory=list)
    failed_revision: Optional[str] = None
    duration_seconds: float = 0.0
    error_class: Optional[str] = None
    warnings: list = field(default_factory=list)
    driver: Optional[str] = None
    lock_attempts: int = 0  # runs of the upgrade (more than 1 after a lock_timeout)
    lock_timeouts: list = field(default_factory=list)  # what each lock_timeout ran into
    runner_version: str = ""
    secrets: list = field(default_factory=list)  # password spellings to mask; never written
    plan: Any = None  # `plan`'s plan_result.PlanResult: its keys join the result
    stale_plan: Optional[str] = None  # `migrate --plan-hash` refused: what the SQL hashes to now
    phases: Optional[dict] = None  # contract.PhaseKey -> value, once the scripts were read

    def warn(self, text: str) -> None:
        """Add a warning to the result."""
        self.warnings.append(text)


def _clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip_list(items: list) -> list:
    """Keep at most MAX_LIST_ITEMS entries, saying how many were left out."""
    if len(items) <= MAX_LIST_ITEMS:
        return list(items)
    return list(items[: MAX_LIST_ITEMS - 1]) + [f"... {len(items) - MAX_LIST_ITEMS + 1} more"]


def as_dict(report: Report) -> dict:
    """The result object, masked and clipped, keyed by ``contract.ResultKey``."""
    secrets = report.secrets

    def clean(text: str) -> str:
        return _clip(mask(text, secrets), MAX_MESSAGE_CHARS)

    data = {
        ResultKey.OUTCOME: report.outcome,
        ResultKey.EXIT_CODE: int(report.exit_code),
        ResultKey.FROM_REVISIONS: _clip_list(report.from_revisions),
        ResultKey.TO_REVISIONS: _clip_list(report.to_revisions),
        ResultKey.TARGET_REVISIONS: _clip_list(report.target_revisions),
        ResultKey.APPLIED_REVISIONS: _clip_list(report.applied_revisions),
        ResultKey.FAILED_REVISION: report.failed_revision,
        ResultKey.DURATION_SECONDS: round(report.duration_seconds, 3),
        ResultKey.ERROR_CLASS: report.error_class,
        ResultKey.MESSAGE: clean(report.message),
        ResultKey.WARNINGS: [clean(w) for w in report.warnings[:5]],
        ResultKey.DRIVER: report.driver,
        ResultKey.LOCK_ATTEMPTS: report.lock_attempts,
        ResultKey.RUNNER_VERSION: report.runner_version,
    }
    if report.stale_plan is not None:
        data[ResultKey.STALE_PLAN] = True
        data[PlanKey.PLAN_HASH] = report.stale_plan
    if report.phases is not None:
        data.update(report.phases)
    return data


def to_json(report: Report) -> str:
    """One JSON object under RESULT_MAX_BYTES, shrinking the message and warnings if needed."""
    data = as_dict(report)
    if report.plan is not None:
        return report.plan.fit(data, report.secrets, RESULT_MAX_BYTES)
    encoded = json.dumps(data, separators=(",", ":"))
    while len(encoded.encode()) > RESULT_MAX_BYTES:
        if data[ResultKey.WARNINGS]:
            data[ResultKey.WARNINGS] = data[ResultKey.WARNINGS][:-1]
        else:
            data[ResultKey.MESSAGE] = _clip(
                data[ResultKey.MESSAGE], len(data[ResultKey.MESSAGE]) // 2
            )
        encoded = json.dumps(data, separators=(",", ":"))
    return encoded


def write_result(path: str, report: Report) -> None:
    """Write the result to ``path`` (a file, or /dev/termination-log in a pod)."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_json(report))
