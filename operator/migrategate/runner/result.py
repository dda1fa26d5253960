"""The JSON result a command leaves in --result-file (a Job's termination message)."""

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Optional

from .contract import RESULT_MAX_BYTES, ExitCode, Outcome, PlanKey, ResultKey
from .lint import clip
from .masking import Masker
from .plan_result import JSONObject, PlanResult, clip_revisions

MAX_MESSAGE_CHARS = 1024
# What a run at its target says (the full path and the quick path alike).
AT_TARGET_UNRUN = "database already at the target; env.py not run"


def at_target_of_wait(target: Iterable[str]) -> str:
    """What ``wait`` says once the database is at ``target``."""
    return f"database at the target {' '.join(target)}"


@dataclass(frozen=True)
class Result:
    """What a command found and did.

    A command returns it; a failed command's error carries the part it had found
    (``errors.Failure.result``) and the CLI adds the failure to that.
    """

    outcome: str = ""
    message: str = ""
    exit_code: int = ExitCode.OK
    error_class: Optional[str] = None
    from_revisions: tuple[str, ...] = ()
    to_revisions: tuple[str, ...] = ()
    target_revisions: tuple[str, ...] = ()
    applied_revisions: tuple[str, ...] = ()
    unknown_revisions: tuple[str, ...] = ()  # the database's heads the scripts do not know
    failed_revision: Optional[str] = None
    warnings: tuple[str, ...] = ()
    driver: Optional[str] = None
    lock_attempts: int = 0  # runs of the upgrade (more than 1 after a lock_timeout)
    stale_plan: Optional[str] = None  # `migrate --plan-hash` refused: what the SQL hashes to now
    # contract.PhaseKey -> value, once the scripts were read
    phases: Optional[dict[str, Any]] = None
    plan: Optional[PlanResult] = None  # `plan`: its keys join the result
    duration_seconds: float = 0.0  # the CLI times the whole run
    runner_version: str = ""

    def at(self, heads: Iterable[str]) -> "Result":
        """This result with the database found at ``heads`` (from and to alike)."""
        found = tuple(heads)
        return replace(self, from_revisions=found, to_revisions=found)

    def warned(self, *texts: str) -> "Result":
        """This result with more warnings."""
        return replace(self, warnings=self.warnings + texts)

    def ahead(self, unknown: Iterable[str]) -> "Result":
        """This result of a database ahead of the scripts, holding ``unknown`` revisions."""
        return replace(self, unknown_revisions=tuple(unknown))

    def up_to_date(self, message: str) -> "Result":
        """This result of a run that had nothing to do."""
        return replace(self, outcome=Outcome.UP_TO_DATE.value, message=message)


def as_dict(result: Result, masker: Masker) -> JSONObject:
    """The result object, masked and clipped, keyed by ``contract.ResultKey``."""

    def clean(text: str) -> str:
        return clip(masker(text), MAX_MESSAGE_CHARS)

    data: JSONObject = {
        ResultKey.OUTCOME: result.outcome,
        ResultKey.EXIT_CODE: int(result.exit_code),
        ResultKey.FROM_REVISIONS: clip_revisions(result.from_revisions),
        ResultKey.TO_REVISIONS: clip_revisions(result.to_revisions),
        ResultKey.TARGET_REVISIONS: clip_revisions(result.target_revisions),
        ResultKey.APPLIED_REVISIONS: clip_revisions(result.applied_revisions),
        ResultKey.UNKNOWN_REVISIONS: clip_revisions(result.unknown_revisions),
        ResultKey.FAILED_REVISION: result.failed_revision,
        ResultKey.DURATION_SECONDS: round(result.duration_seconds, 3),
        ResultKey.ERROR_CLASS: result.error_class,
        ResultKey.MESSAGE: clean(result.message),
        ResultKey.WARNINGS: [clean(w) for w in result.warnings[:5]],
        ResultKey.DRIVER: result.driver,
        ResultKey.LOCK_ATTEMPTS: result.lock_attempts,
        ResultKey.RUNNER_VERSION: result.runner_version,
    }
    if result.stale_plan is not None:
        data[ResultKey.STALE_PLAN] = True
        data[PlanKey.PLAN_HASH] = result.stale_plan
    if result.phases is not None:
        data.update(result.phases)
    return data


def to_json(result: Result, masker: Masker) -> str:
    """One JSON object under RESULT_MAX_BYTES, shrinking the message and warnings if needed."""
    data = as_dict(result, masker)
    if result.plan is not None:
        return result.plan.fit(data, masker, RESULT_MAX_BYTES)
    encoded = json.dumps(data, separators=(",", ":"))
    while len(encoded.encode()) > RESULT_MAX_BYTES:
        if data[ResultKey.WARNINGS]:
            data[ResultKey.WARNINGS] = data[ResultKey.WARNINGS][:-1]
        else:
            data[ResultKey.MESSAGE] = clip(
                data[ResultKey.MESSAGE], len(data[ResultKey.MESSAGE]) // 2
            )
        encoded = json.dumps(data, separators=(",", ":"))
    return encoded


def write_result(path: str, result: Result, masker: Masker) -> None:
    """Write the result to ``path`` (a file, or /dev/termination-log in a pod)."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_json(result, masker))
