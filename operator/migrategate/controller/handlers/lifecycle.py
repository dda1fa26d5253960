"""Operator start-up and clean-up: kopf tuning, the API connection, metrics."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from migrategate.api import constants as c
from migrategate.controller import metrics, migration_decision
from migrategate.controller.gate_keeper import GateKeeper
from migrategate.controller.kube import Kube
from migrategate.controller.migration_reconciler import Reconciler
from migrategate.controller.settings import Settings, job_defaults


def tune(kopf_settings: kopf.OperatorSettings, ours: Settings) -> None:
    """All of kopf's tuning, in one place."""
    persistence = kopf_settings.persistence
    # Progress and diff-base in annotations, never in status: status keeps a strict schema.
    persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration"
    )
    persistence.finalizer = f"{c.KOPF_PREFIX}/finalizer"  # unused: no deletion handlers
    # Events arrive in bursts (create + our own status patch); a short window keeps latency low.
    kopf_settings.batching.batch_window = ours.batch_window
    # The operator posts its own Events on transitions; kopf's per-handler ones are noise.
    kopf_settings.posting.level = logging.WARNING
    # With peering, a replica's keep-alive record expires this long after its last renewal (every
    # lifetime - 5..10 s), so a replica that died without removing it is taken over that soon.
    kopf_settings.peering.lifetime = ours.peering_lifetime
    # Reconnect watches now and then, so a silently dead connection cannot stall the operator.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330


async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours: Settings = memo.settings
    tune(settings, ours)
    kube = await Kube.connect()
    config = migration_decision.Config(
        runner_image=ours.runner_image,
        runner_image_pull_policy=ours.runner_image_pull_policy,
        message_max_chars=ours.message_max_chars,
        job_defaults=job_defaults(ours),
        image_pull_grace_seconds=ours.image_pull_grace,
    )
    # Set on the operator-wide memo: kopf gives each object a shallow copy of it.
    memo.kube = kube
    memo.reconciler = Reconciler(kube, config)
    memo.gate = GateKeeper(kube)
    metrics.serve(ours.metrics_port)


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None:
        reconciler.close()
    kube = getattr(memo, "kube", None)
    if kube is not None:
        await kube.close()


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
