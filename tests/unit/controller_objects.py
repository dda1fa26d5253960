"""Job and pod dicts shaped like the API server's, for controller unit tests."""

import json

from migrategate.api import constants as c

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"


def job(
    name="shop-abc",
    chash="abc",
    attempt=1,
    state="active",
    reason=None,
    created=T0,
    image="app:1",
    message=None,
    kind=None,
):
    """A Job; `kind` is its job-kind label (plan, contract), absent for a migration Job."""
    conds = []
    if state == "complete":
        conds = [{"type": "Complete", "status": "True", "lastTransitionTime": T1}]
    elif state == "failed":
        conds = [
            {
                "type": "Failed",
                "status": "True",
                "reason": reason or "BackoffLimitExceeded",
                "message": message or "Job has reached the specified backoff limit",
                "lastTransitionTime": T1,
            }
        ]
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "annotations": {c.ANNOTATION_IMAGE: image},
            "labels": {
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_MIGRATION: "shop",
                c.LABEL_CONTENT_HASH: chash,
                c.LABEL_ATTEMPT: str(attempt),
                **({c.LABEL_JOB_KIND: kind} if kind else {}),
            },
        },
        "status": {"startTime": T0, "conditions": conds},
    }


def migration(spec, status=None, annotations=None, generation=1):
    """The DatabaseMigration shop in ns1, as the API returns it."""
    return {
        "metadata": {
            "name": "shop",
            "namespace": "ns1",
            "uid": "u1",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": status or {},
    }


def result(exit_code=0, **extra):
    out = {
        "outcome": "Succeeded" if exit_code == 0 else "Failed",
        "exitCode": exit_code,
        "fromRevisions": ["a1"],
        "toRevisions": ["b2"] if exit_code == 0 else ["a1"],
        "targetRevisions": ["b2"],
        "appliedRevisions": ["b2"] if exit_code == 0 else [],
        "durationSeconds": 1.25,
    }
    out.update(extra)
    return json.dumps(out)


def pod(
    job_name="shop-abc",
    exit_code=None,
    message=None,
    waiting=None,
    reason=None,
    init_exit=0,
    phase=None,
    created=T0,
    terminated_reason=None,
    deleted_at=None,
    conditions=(),
    init_waiting=None,
):
    """A migration pod. `conditions`: (type, lastTransitionTime, reason, message) tuples."""
    main: dict = {"name": c.CONTAINER_NAME, "state": {}}
    if waiting:
        main["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif exit_code is not None:
        main["state"] = {
            "terminated": {
                "exitCode": exit_code,
                "message": message,
                "startedAt": T0,
                "finishedAt": T1,
                "reason": terminated_reason or ("Completed" if exit_code == 0 else "Error"),
            }
        }
    else:
        main["state"] = {"running": {"startedAt": T0}}
    init = {"name": c.INIT_CONTAINER_NAME, "state": {"terminated": {"exitCode": init_exit}}}
    if init_waiting:
        init["state"] = {"waiting": {"reason": init_waiting[0], "message": init_waiting[1]}}
        main["state"] = {"waiting": {"reason": "PodInitializing"}}
    meta = {
        "name": f"{job_name}-xyz",
        "creationTimestamp": created,
        "labels": {"batch.kubernetes.io/job-name": job_name, c.LABEL_MIGRATION: "shop"},
    }
    if deleted_at:
        meta["deletionTimestamp"] = deleted_at
    return {
        "metadata": meta,
        "status": {
            "phase": phase or ("Failed" if exit_code else "Running"),
            "reason": reason,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": at, "reason": r, "message": m}
                for t, at, r, m in conditions
            ],
            "initContainerStatuses": [init],
            "containerStatuses": [main],
        },
    }


def gated_pod_body(
    image: str = "shop:2",
    *,
    name: str = "web-1",
    migration: str | None = "shop",
    gates: tuple[str, ...] = (c.SCHEDULING_GATE,),
    init_image: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> dict:
    annotations = {c.ANNOTATION_MIGRATION: migration} if migration else {}
    spec: dict = {
        "containers": [{"name": "app", "image": image}, {"name": "proxy", "image": "envoy:1"}],
        "schedulingGates": [{"name": g} for g in gates],
    }
    if init_image:
        spec["initContainers"] = [{"name": "init", "image": init_image}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "annotations": annotations,
            "creationTimestamp": created,
        },
        "spec": spec,
    }
