"""Facts about child Jobs and pods, pulled out of their API dicts (camelCase, as the API sends)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migrategate.api import constants as c


@dataclass(frozen=True)
class ContainerFacts:
    """The state of one container: waiting, running or terminated."""

    waiting_reason: str | None = None
    waiting_message: str | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    terminated_message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None


@dataclass(frozen=True)
class PodFacts:
    name: str
    job_name: str
    created: str
    phase: str | None
    reason: str | None  # e.g. Evicted
    message: str | None
    init: ContainerFacts | None
    main: ContainerFacts | None
    deleting: bool = False  # deletionTimestamp set: drained, deleted, garbage-collected
    disruption: str | None = None  # a DisruptionTarget condition's "reason: message"
    scheduled_at: str | None = None  # PodScheduled's lastTransitionTime
    initialized_at: str | None = None  # Initialized's (init containers done)


@dataclass(frozen=True)
class JobFacts:
    name: str
    uid: str
    created: str
    content_hash: str
    attempt: int
    active: bool  # neither Complete nor Failed yet
    succeeded: bool
    failure_reason: str | None  # the Failed condition's reason, e.g. DeadlineExceeded
    failure_message: str | None
    start_time: str | None
    finish_time: str | None
    deleting: bool
    image: str | None = None  # the application image it migrates (annotation)
    plan: bool = False  # a plan Job (`migrategate plan`), not a migration
    plan_hash: str | None = None  # a migration Job's approved plan (annotation)
    contract: bool = False  # a contract Job (`--phase contract`), after the rollout


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_facts(job: Mapping[str, Any]) -> JobFacts:
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = job.get("status") or {}
    complete = _condition(status, "Complete")
    failed = _condition(status, "Failed")
    try:
        attempt = int(labels.get(c.LABEL_ATTEMPT, "1"))
    except ValueError:
        attempt = 1
    finish = status.get("completionTime") or (failed or complete or {}).get("lastTransitionTime")
    return JobFacts(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        created=meta.get("creationTimestamp") or "",
        content_hash=labels.get(c.LABEL_CONTENT_HASH, ""),
        attempt=attempt,
        active=complete is None and failed is None,
        succeeded=complete is not None,
        failure_reason=(failed or {}).get("reason"),
        failure_message=(failed or {}).get("message"),
        start_time=status.get("startTime"),
        finish_time=finish,
        deleting=bool(meta.get("deletionTimestamp")),
        image=(meta.get("annotations") or {}).get(c.ANNOTATION_IMAGE),
        plan=labels.get(c.LABEL_JOB_KIND) == c.JOB_KIND_PLAN,
        plan_hash=(meta.get("annotations") or {}).get(c.ANNOTATION_PLAN_HASH),
        contract=labels.get(c.LABEL_JOB_KIND) == c.JOB_KIND_CONTRACT,
    )


def _container(statuses: list[Mapping[str, Any]] | None, name: str) -> ContainerFacts | None:
    for st in statuses or []:
        if st.get("name") != name:
            continue
        state = st.get("state") or {}
        waiting = state.get("waiting") or {}
        term = state.get("terminated") or {}
        running = state.get("running") or {}
        return ContainerFacts(
            waiting_reason=waiting.get("reason"),
            waiting_message=waiting.get("message"),
            exit_code=term.get("exitCode"),
            terminated_reason=term.get("reason"),
            terminated_message=term.get("message"),
            started_at=term.get("startedAt") or running.get("startedAt"),
            finished_at=term.get("finishedAt"),
        )
    return None


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    return PodFacts(
        name=meta.get("name", ""),
        job_name=labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or "",
        created=meta.get("creationTimestamp") or "",
        phase=status.get("phase"),
        reason=status.get("reason"),
        message=status.get("message"),
        init=_container(status.get("initContainerStatuses"), c.INIT_CONTAINER_NAME),
        main=_container(status.get("containerStatuses"), c.CONTAINER_NAME),
        deleting=bool(meta.get("deletionTimestamp")),
        disruption=_disruption(status),
        scheduled_at=(_condition(status, "PodScheduled") or {}).get("lastTransitionTime"),
        initialized_at=(_condition(status, "Initialized") or {}).get("lastTransitionTime"),
    )


def _disruption(status: Mapping[str, Any]) -> str | None:
    """Why the pod was disrupted (evicted, preempted, drained, its node shut down), if it was."""
    cond = _condition(status, "DisruptionTarget")
    if cond is None:
        return None
    return ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x) or "-"


def parse_time(text: str | None) -> datetime | None:
    """An API timestamp (RFC 3339, e.g. 2026-01-01T00:00:00Z); None if absent or malformed."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The runner's JSON result from a termination message, or None if it is not one."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
