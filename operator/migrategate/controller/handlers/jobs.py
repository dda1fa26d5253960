"""Child Jobs: a finished or deleted Job re-reconciles its DatabaseMigration (watch, no polling)."""

from __future__ import annotations

from typing import Any

import kopf

from migrategate.api import constants as c
from migrategate.controller.facts import job_facts


def finished_or_gone(type: str | None, body: kopf.Body, **_: Any) -> bool:
    """While a Job runs, its status churn changes nothing the operator reports."""
    return type == "DELETED" or not job_facts(body).active


async def on_job_event(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    migration = body.metadata.labels.get(c.LABEL_MIGRATION)
    if migration:
        await memo.reconciler.reconcile(namespace, migration)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_MIGRATION: kopf.PRESENT},
        when=finished_or_gone,  # type: ignore[arg-type]  # kopf passes kwargs by name
        registry=registry,
        id="child-job",
    )(on_job_event)  # type: ignore[arg-type]  # kopf passes kwargs by name
