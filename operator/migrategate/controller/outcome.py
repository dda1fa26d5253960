"""The outcome classifier: a Job and its pods in, a verdict out. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from migrategate.controller.facts import JobFacts, PodFacts, parse_result
from migrategate.runner import contract
from migrategate.runner.contract import ExitCode, ResultKey


class Kind(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


# A pod stuck in one of these will not start by itself: a missing Secret or
# key, or an image that cannot be pulled or named.
PERMANENT_WAITING = frozenset(
    {
        "CreateContainerConfigError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
    }
)
PERMANENT_EXIT = {
    ExitCode.BAD_INPUT: "BadInput",
    ExitCode.MIGRATION_FAILED: "MigrationFailed",
    ExitCode.VERIFY_FAILED: "VerificationFailed",
}
SIGTERM_EXIT = 143  # drained or preempted: worth another try


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    message: str = ""
    result: dict[str, Any] | None = field(default=None)
    started_at: str | None = None
    finished_at: str | None = None


def latest_pod(pods: Sequence[PodFacts]) -> PodFacts | None:
    return max(pods, key=lambda p: p.created, default=None)


def classify(job: JobFacts, pods: Sequence[PodFacts]) -> Verdict:
    """What happened to this Job (attempt)."""
    pod = latest_pod(pods)
    main = pod.main if pod else None
    result = parse_result(main.terminated_message) if main else None
    started = (main.started_at if main else None) or job.start_time
    finished = (main.finished_at if main else None) or job.finish_time

    def verdict(kind: Kind, reason: str, message: str = "") -> Verdict:
        if result and result.get(ResultKey.MESSAGE) and kind is not Kind.SUCCEEDED:
            message = str(result[ResultKey.MESSAGE])
        return Verdict(kind, reason, message, result, started, finished)

    if job.succeeded:
        return verdict(Kind.SUCCEEDED, "Succeeded")
    if job.active:
        stuck = _stuck(pod)
        if stuck:
            return verdict(Kind.PERMANENT, *stuck)
        return verdict(Kind.RUNNING, "JobRunning")
    return _failed(job, pod, verdict)


def _stuck(pod: PodFacts | None) -> tuple[str, str] | None:
    """A permanent waiting reason of the pod's containers, if any."""
    if pod is None:
        return None
    for cont in (pod.init, pod.main):
        if cont and cont.waiting_reason in PERMANENT_WAITING:
            return cont.waiting_reason, cont.waiting_message or cont.waiting_reason
    return None


def _failed(job: JobFacts, pod: PodFacts | None, verdict: Any) -> Verdict:
    if job.failure_reason == "DeadlineExceeded":
        return verdict(Kind.TRANSIENT, "DeadlineExceeded", job.failure_message or "")
    if pod is not None and pod.reason == "Evicted":
        return verdict(Kind.TRANSIENT, "Evicted", pod.message or "")
    if pod is not None and pod.init and pod.init.terminated and pod.init.exit_code != 0:
        return verdict(
            Kind.PERMANENT,
            "RunnerInstallFailed",
            pod.init.terminated_message or f"init container exited {pod.init.exit_code}",
        )
    main = pod.main if pod else None
    if main is None or not main.terminated:
        stuck = _stuck(pod)
        if stuck:
            return verdict(Kind.PERMANENT, *stuck)
        # No container result (pod gone, or killed before starting): try again, within limits.
        return verdict(Kind.TRANSIENT, job.failure_reason or "PodLost", job.failure_message or "")
    return _by_exit_code(main.exit_code or 0, main, verdict)


def _by_exit_code(code: int, main: Any, verdict: Any) -> Verdict:
    text = main.terminated_message or main.terminated_reason or ""
    if not text or parse_result(text) is not None:  # a result without a message of its own
        text = f"exit code {code}"
    if code in contract.TRANSIENT_EXIT_CODES:
        return verdict(Kind.TRANSIENT, "Transient", text)
    if code in PERMANENT_EXIT:
        return verdict(Kind.PERMANENT, PERMANENT_EXIT[ExitCode(code)], text)
    if main.terminated_reason == "OOMKilled":
        return verdict(Kind.PERMANENT, "OOMKilled", "out of memory: raise job.resources")
    if code == SIGTERM_EXIT:
        return verdict(Kind.TRANSIENT, "Terminated", text)
    return verdict(Kind.PERMANENT, f"ExitCode{code}", text)
