"""The outcome classifier: a Job and its pods in, a verdict out. No I/O."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrategate.controller.facts import (
    ContainerFacts,
    JobFacts,
    PodFacts,
    parse_result,
    parse_time,
)
from migrategate.runner import contract
from migrategate.runner.contract import ExitCode, ResultKey


class Kind(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


# A container waiting for one of these will not start by itself: a missing Secret or key
# (or another setting the kubelet refuses), an image name that does not parse, an image
# that must not be pulled and is not there.
PERMANENT_WAITING = frozenset(
    {"CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"}
)
# A failed pull may be a registry hiccup that clears on the kubelet's next try: permanent
# only once it has lasted the image pull grace period.
PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff"})
STUCK_WAITING = PERMANENT_WAITING | PULL_WAITING  # a pod waiting for one is worth a reconcile
DEFAULT_IMAGE_PULL_GRACE = 60.0  # seconds
# Pod status reasons of a pod the kubelet ended for reasons of its own, not the runner's.
DISRUPTED_REASONS = frozenset({"Evicted", "Terminated", "Shutdown", "NodeShutdown", "Preempting"})
PERMANENT_EXIT = {
    ExitCode.BAD_INPUT: "BadInput",
    ExitCode.MIGRATION_FAILED: "MigrationFailed",
    ExitCode.VERIFY_FAILED: "VerificationFailed",
}
# SIGTERM (the runner stops on it, exiting 143): drained, deleted or preempted, worth another try.
SIGTERM_EXIT = ExitCode.TERMINATED
# The runner's own verdicts: they stand even if the pod was disrupted afterwards. Not 143: that
# is the runner obeying the disruption, which itself says more (evicted, deleted...).
RUNNER_EXIT = (frozenset(PERMANENT_EXIT) | contract.TRANSIENT_EXIT_CODES) - {SIGTERM_EXIT}
# SIGKILL that is not OOMKilled: the grace period after SIGTERM ran out (the runner was stuck in
# a statement that does not wake up for signals, or it is an older runner, installed in the
# image, without a SIGTERM handler: as the container's PID 1 it never saw the SIGTERM at all).
SIGKILL_EXIT = 137


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    message: str = ""
    result: dict[str, Any] | None = field(default=None)
    started_at: str | None = None
    finished_at: str | None = None
    # RUNNING with a failing image pull: seconds until it counts as permanent.
    recheck_after: float | None = None


@dataclass(frozen=True)
class _Stuck:
    """A container that waits for a reason that may never clear."""

    reason: str
    message: str
    remaining: float  # seconds until it is permanent; <= 0: it is


def latest_pod(pods: Sequence[PodFacts]) -> PodFacts | None:
    return max(pods, key=lambda p: p.created, default=None)


def classify(
    job: JobFacts,
    pods: Sequence[PodFacts],
    now: datetime,
    image_pull_grace: float = DEFAULT_IMAGE_PULL_GRACE,
) -> Verdict:
    """What happened to this Job (attempt), as seen at `now`."""
    pod = latest_pod(pods)
    main = pod.main if pod else None
    result = parse_result(main.terminated_message) if main else None
    started = (main.started_at if main else None) or job.start_time
    finished = (main.finished_at if main else None) or job.finish_time

    def verdict(
        kind: Kind, reason: str, message: str = "", recheck: float | None = None
    ) -> Verdict:
        if result and result.get(ResultKey.MESSAGE) and kind is not Kind.SUCCEEDED:
            message = str(result[ResultKey.MESSAGE])
        return Verdict(kind, reason, message, result, started, finished, recheck)

    if job.succeeded:
        return verdict(Kind.SUCCEEDED, "Succeeded")
    stuck = _stuck(pod, now, image_pull_grace)
    if job.active:
        if stuck is None:
            return verdict(Kind.RUNNING, "JobRunning")
        if stuck.remaining > 0:  # the kubelet still retries the pull
            return verdict(Kind.RUNNING, stuck.reason, stuck.message, stuck.remaining)
        return verdict(Kind.PERMANENT, stuck.reason, stuck.message)
    return _failed(job, pod, stuck, verdict)


def _stuck(pod: PodFacts | None, now: datetime, grace: float) -> _Stuck | None:
    """The first container of the pod waiting for a reason that may not clear, if any."""
    if pod is None:
        return None
    for cont in (pod.init, pod.main):
        if cont is None or cont.waiting_reason not in STUCK_WAITING:
            continue
        reason = cont.waiting_reason
        message = cont.waiting_message or reason
        if reason in PERMANENT_WAITING:
            return _Stuck(reason, message, 0.0)
        since = _pull_started(pod, cont)
        waited = (now - since).total_seconds() if since else grace
        return _Stuck(reason, message, grace - waited)
    return None


def _pull_started(pod: PodFacts, cont: ContainerFacts) -> datetime | None:
    """When the kubelet could first try to pull this container's image (the API keeps no
    timestamp of a waiting state): once the pod was scheduled, and for the main container
    once the init containers were done."""
    marks = [pod.created, pod.scheduled_at]
    if cont is pod.main:
        marks.append(pod.initialized_at)
    times = [t for t in (parse_time(m) for m in marks) if t is not None]
    return max(times, default=None)


def _disrupted(pod: PodFacts | None) -> tuple[str, str] | None:
    """Reason and message when the pod was ended from outside: evicted, drained, deleted."""
    if pod is None:
        return None
    if pod.reason in DISRUPTED_REASONS:
        return pod.reason, pod.message or ""
    if pod.disruption:
        return "DisruptionTarget", pod.disruption
    if pod.deleting:
        return "PodDeleted", "the pod was deleted before the runner finished"
    return None


# verdict(kind, reason, message, recheck): a Verdict carrying the attempt's result and times.
MakeVerdict = Callable[..., "Verdict"]


def _failed(
    job: JobFacts, pod: PodFacts | None, stuck: _Stuck | None, verdict: MakeVerdict
) -> Verdict:
    if job.failure_reason == "DeadlineExceeded":
        return verdict(Kind.TRANSIENT, "DeadlineExceeded", job.failure_message or "")
    main = pod.main if pod else None
    code = main.exit_code if main is not None else None
    if code not in RUNNER_EXIT:
        disrupted = _disrupted(pod)
        if disrupted:
            return verdict(Kind.TRANSIENT, *disrupted)
    if pod is not None and pod.init and pod.init.terminated and pod.init.exit_code != 0:
        return verdict(
            Kind.PERMANENT,
            "RunnerInstallFailed",
            pod.init.terminated_message or f"init container exited {pod.init.exit_code}",
        )
    if main is None or not main.terminated:
        if stuck is not None:
            kind = Kind.PERMANENT if stuck.remaining <= 0 else Kind.TRANSIENT
            return verdict(kind, stuck.reason, stuck.message)
        if job.failure_reason == "PodFailurePolicy":  # the pod is gone; its Job says why
            return verdict(Kind.TRANSIENT, *_policy_failure(job.failure_message or ""))
        # No container result (pod gone, or killed before starting): try again, within limits.
        return verdict(Kind.TRANSIENT, job.failure_reason or "PodLost", job.failure_message or "")
    return _by_exit_code(main.exit_code or 0, main, verdict)


# The Job controller's message when a rule of jobs.POD_FAILURE_POLICY failed the Job, e.g.
# "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0", "Container migrate
# for pod ns/p failed with exit code 143 matching FailJob rule at index 1".
_POLICY_CONDITION = re.compile(r"has condition (?P<type>\w+) matching")
_POLICY_EXIT_CODE = re.compile(r"failed with exit code (?P<code>\d+) matching")


def _policy_failure(message: str) -> tuple[str, str]:
    """Reason and message of a Job failed by its pod failure policy: a disruption, never the
    runner's verdict (those exit codes match no rule)."""
    found = _POLICY_CONDITION.search(message)
    if found:
        return found.group("type"), message
    found = _POLICY_EXIT_CODE.search(message)
    if found:
        signalled = {SIGTERM_EXIT: "Terminated", SIGKILL_EXIT: "Killed"}
        return signalled.get(int(found.group("code")), "PodFailurePolicy"), message
    return "PodFailurePolicy", message


def _by_exit_code(code: int, main: ContainerFacts, verdict: MakeVerdict) -> Verdict:
    text = main.terminated_message or main.terminated_reason or ""
    if not text or parse_result(text) is not None:  # a result without a message of its own
        text = f"exit code {code}"
    if code == SIGTERM_EXIT:
        return verdict(Kind.TRANSIENT, "Terminated", text)
    if code in contract.TRANSIENT_EXIT_CODES:
        return verdict(Kind.TRANSIENT, "Transient", text)
    if code in PERMANENT_EXIT:
        return verdict(Kind.PERMANENT, PERMANENT_EXIT[ExitCode(code)], text)
    if main.terminated_reason == "OOMKilled":
        return verdict(Kind.PERMANENT, "OOMKilled", "out of memory: raise job.resources")
    if code == SIGKILL_EXIT:
        return verdict(Kind.TRANSIENT, "Killed", text)
    return verdict(Kind.PERMANENT, f"ExitCode{code}", text)


# What the kubelet says when a container's Secret or key is missing.
_SECRET_NOT_FOUND = re.compile(r'secrets? "(?P<name>[^"]+)" not found')
_KEY_NOT_FOUND = re.compile(r"couldn't find key (?P<key>\S+) in Secret (?:[^/\s]+/)?(?P<name>\S+)")


def config_error_hint(message: str, secret_name: str, secret_key: str) -> str:
    """What to add to a CreateContainerConfigError's own message, if anything.

    The databaseURL Secret is named only when the message is about that Secret or its key;
    any other message (another Secret or ConfigMap of job.env, runAsNonRoot...) stands alone.
    """
    missing = _SECRET_NOT_FOUND.search(message) or _KEY_NOT_FOUND.search(message)
    if missing is None:
        return ""
    if missing.group("name") == secret_name:
        return f" (databaseURL.secretKeyRef: Secret {secret_name!r}, key {secret_key!r})"
    return " (a Secret named in job.env or job.envFrom)"
