"""Child Jobs and pods: an event that may change the outcome re-reconciles the migration.

- A Job that finished or was deleted (while a Job runs, its status churn changes
  nothing the operator reports).
- A pod that cannot start (missing Secret, bad image): it never fails its Job, so
  the operator watches for it and stalls the migration (a failing pull only after
  the image pull grace period).
Both carry the label naming their DatabaseMigration; no polling.
"""

from __future__ import annotations

from typing import Any

import kopf

from migrategate.api import constants as c
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.outcome import STUCK_WAITING


def finished_or_gone(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return type == "DELETED" or not job_facts(body).active


def cannot_start(body: kopf.Body, **_: Any) -> bool:
    pod = pod_facts(body)
    return any(x is not None and x.waiting_reason in STUCK_WAITING for x in (pod.init, pod.main))


async def on_child_event(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    migration = body.metadata.labels.get(c.LABEL_MIGRATION)
    if migration and namespace:
        await memo.reconciler.reconcile(namespace, migration)


def register(registry: kopf.OperatorRegistry) -> None:
    labels: dict[str, Any] = {
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_MIGRATION: kopf.PRESENT,
    }
    kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels=labels,
        when=finished_or_gone,
        registry=registry,
        id="child-job",
    )(on_child_event)
    kopf.on.event(
        "",
        "v1",
        "pods",
        labels={**labels, c.LABEL_COMPONENT: c.COMPONENT_MIGRATION},
        when=cannot_start,
        registry=registry,
        id="migration-pod",
    )(on_child_event)
