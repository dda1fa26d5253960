"""Pods of migration Jobs: a pod that cannot start (missing Secret, bad image) never fails
its Job, so the operator watches for it and stalls the migration (a failing pull only after
the image pull grace period)."""

from __future__ import annotations

from typing import Any

import kopf

from migrategate.api import constants as c
from migrategate.controller.facts import pod_facts
from migrategate.controller.outcome import STUCK_WAITING


def cannot_start(body: kopf.Body, **_: Any) -> bool:
    pod = pod_facts(body)
    return any(x is not None and x.waiting_reason in STUCK_WAITING for x in (pod.init, pod.main))


async def on_pod_event(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    migration = body.metadata.labels.get(c.LABEL_MIGRATION)
    if migration:
        await memo.reconciler.reconcile(namespace, migration)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(
        "",
        "v1",
        "pods",
        labels={
            c.LABEL_MANAGED_BY: c.MANAGED_BY,
            c.LABEL_COMPONENT: c.COMPONENT_MIGRATION,
            c.LABEL_MIGRATION: kopf.PRESENT,
        },
        when=cannot_start,  # type: ignore[arg-type]  # kopf passes kwargs by name
        registry=registry,
        id="migration-pod",
    )(on_pod_event)  # type: ignore[arg-type]  # kopf passes kwargs by name
