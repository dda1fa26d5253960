"""Between the expand and the contract phase: pod and Deployment events wake waiting migrations.

Which migrations an event wakes is rollout_watch.RolloutWatch's (`memo.reconciler.rollouts`),
filled by the reconciler while a migration waits; the `when` filters keep every other pod
and Deployment event from reaching a handler. A woken migration is nudged: its reconcile
runs in a task of its own and reads the rollout's facts again.
"""

from __future__ import annotations

from typing import Any

import kopf


def _pod_wakes(namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo.reconciler.rollouts.woken_by_pod(namespace or "", meta))


def _deployment_wakes(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo.reconciler.rollouts.woken_by_deployment(namespace or "", name or ""))


async def on_pod(namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    for key in memo.reconciler.rollouts.woken_by_pod(namespace or "", meta):
        memo.reconciler.nudge(*key)


async def on_deployment(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
    for key in memo.reconciler.rollouts.woken_by_deployment(namespace or "", name or ""):
        memo.reconciler.nudge(*key)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event("", "v1", "pods", when=_pod_wakes, registry=registry, id="rollout-pod")(on_pod)
    kopf.on.event(
        "apps",
        "v1",
        "deployments",
        when=_deployment_wakes,
        registry=registry,
        id="rollout-deployment",
    )(on_deployment)
