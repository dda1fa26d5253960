"""The rollout gate: lift `migrategate.io/migration` from pods once their image is migrated.

Two kopf indexes join pods and DatabaseMigrations without polling or API reads:
- `gated_pods`: (namespace, migration name) -> facts of each pod that carries the gate;
- `migration_states`: (namespace, name) -> whether it exists and its migratedImage.

A gated pod's event looks up its migration; a migration's event looks up its
gated pods. kopf runs no handler before its indexes are filled from the initial
listing, so a restarted operator sees every gated pod and every migratedImage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from migrategate.api import constants as c
from migrategate.controller import gate, metrics
from migrategate.controller.gate import Decision, GatedPod, MigrationState, Reason

log = logging.getLogger(__name__)
PodKey = tuple[str, str]  # (namespace, name)
RETRY_DELAYS = (0.2, 1.0, 3.0)  # a failed release is retried in place: no later event may come
WARN_REASONS = (Reason.NO_ANNOTATION, Reason.MIGRATION_NOT_FOUND)
# A chart applies the Deployment and its DatabaseMigration together; the pod may be seen first.
WARN_GRACE_SECONDS = 3.0


@dataclass
class GateState:
    """Gated pods seen by this process (the gauge), pods released and pods warned about."""

    held: dict[PodKey, GatedPod] = field(default_factory=dict)
    released: set[PodKey] = field(default_factory=set)  # until their gate-less event arrives
    warned: set[PodKey] = field(default_factory=set)

    def hold(self, pod: GatedPod) -> None:
        self.held[pod.key] = pod
        metrics.GATED_PODS.set(len(self.held))

    def mark_released(self, key: PodKey) -> GatedPod | None:
        """Record our release; the pod it held, or None if another handler released it first."""
        self.released.add(key)
        pod = self.held.pop(key, None)
        metrics.GATED_PODS.set(len(self.held))
        return pod

    def forget(self, key: PodKey) -> None:
        self.held.pop(key, None)
        self.released.discard(key)
        self.warned.discard(key)
        metrics.GATED_PODS.set(len(self.held))

    def tracks(self, key: PodKey) -> bool:
        return key in self.held or key in self.released


# ----------------------------------------------------------------------------- indexes


def index_gated_pod(body: kopf.Body, **_: Any) -> dict[tuple[str, str], GatedPod]:
    pod = gate.pod_facts(body)
    return {(pod.namespace, pod.migration): pod} if pod.migration else {}


def index_migration(
    body: kopf.Body, name: str, namespace: str, **_: Any
) -> dict[tuple[str, str], MigrationState]:
    return {(namespace, name): gate.migration_state(body)}


def lookup_migration(index: kopf.Index, namespace: str, name: str | None) -> MigrationState:
    store = index.get((namespace, name)) if name else None
    return next(iter(store), gate.MISSING) if store else gate.MISSING


# ----------------------------------------------------------------------------- handlers


async def on_startup(memo: kopf.Memo, **_: Any) -> None:
    # Set on the operator-wide memo: kopf gives each object a shallow copy of it.
    memo.gate = GateState()


async def on_gated_pod(
    event: dict[str, Any], body: kopf.Body, memo: kopf.Memo, migration_states: kopf.Index, **_: Any
) -> None:
    pod = gate.pod_facts(body)
    state: GateState = memo.gate
    if event.get("type") == "DELETED" or not pod.gated:
        state.forget(pod.key)  # gone, or released (by us or someone else)
        return
    if pod.key in state.released:
        return  # an event from before our release landed
    state.hold(pod)
    decision = _decide(pod, migration_states)
    if decision.reason in WARN_REASONS and pod.key not in state.warned:
        await asyncio.sleep(WARN_GRACE_SECONDS)
        decision = _decide(pod, migration_states)  # the index may have caught up meanwhile
        if decision.reason in WARN_REASONS and pod.key in state.held:
            await _warn(memo, pod, decision)
    if decision.release:
        await release(memo, [(pod, decision)])


def _decide(pod: GatedPod, migration_states: kopf.Index) -> Decision:
    return gate.decide(pod, lookup_migration(migration_states, pod.namespace, pod.migration))


async def on_migration_event(
    event: dict[str, Any],
    body: kopf.Body,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    gated_pods: kopf.Index,
    **_: Any,
) -> None:
    if event.get("type") == "DELETED":
        return
    migration = gate.migration_state(body)
    decisions = [(p, gate.decide(p, migration)) for p in gated_pods.get((namespace, name), ())]
    due = [(p, d) for p, d in decisions if d.release]
    if decisions:
        log.info(
            "%s/%s has migrated %s: %d gated pods, %d due",
            *(namespace, name, migration.migrated_image, len(decisions), len(due)),
        )
    await release(memo, due)


async def release(memo: kopf.Memo, pods: Iterable[tuple[GatedPod, Decision]]) -> None:
    """Lift the gate from each pod, concurrently; a failure on one does not hold the others."""
    await asyncio.gather(*(_release_one(memo, pod, decision) for pod, decision in pods))


async def _release_one(memo: kopf.Memo, pod: GatedPod, decision: Decision) -> None:
    for delay in (*RETRY_DELAYS, None):
        try:
            await memo.kube.remove_scheduling_gate(pod.namespace, pod.name, c.SCHEDULING_GATE)
            break
        except (ApiException, OSError, TimeoutError) as e:
            if delay is None:
                log.error("could not lift the gate of %s/%s: %s", pod.namespace, pod.name, e)
                return
            await asyncio.sleep(delay)
    # Count each pod's wait once, though its own event and its migration's may both release it.
    if memo.gate.mark_released(pod.key) is not None:
        waited = gate.wait_seconds(pod, datetime.now(UTC))
        if waited is not None:
            metrics.GATE_WAIT.observe(waited)
    log.info("released pod %s/%s: %s", pod.namespace, pod.name, decision.message)


async def _warn(memo: kopf.Memo, pod: GatedPod, decision: Decision) -> None:
    memo.gate.warned.add(pod.key)
    log.warning("pod %s/%s stays gated: %s", pod.namespace, pod.name, decision.message)
    await memo.kube.post_event(_pod_ref(pod), "Warning", decision.reason, decision.message)


def _pod_ref(pod: GatedPod) -> dict[str, Any]:
    meta = {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


# ----------------------------------------------------------------------------- filters


def _gated(spec: kopf.Spec, **_: Any) -> bool:
    return gate.has_gate(spec)


def _gated_or_held(
    spec: kopf.Spec, name: str | None, namespace: str | None, memo: Any, **_: Any
) -> bool:
    # A tracked pod's first event without the gate (or its deletion) updates the state.
    return gate.has_gate(spec) or memo.gate.tracks((namespace or "", name or ""))


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(registry=registry, id="gate-startup")(on_startup)
    kopf.index("", "v1", "pods", when=_gated, registry=registry, id="gated_pods")(
        index_gated_pod  # type: ignore[arg-type]  # kopf passes kwargs by name
    )
    kopf.index(c.GROUP, c.VERSION, c.PLURAL, registry=registry, id="migration_states")(
        index_migration  # type: ignore[arg-type]
    )
    kopf.on.event("", "v1", "pods", when=_gated_or_held, registry=registry, id="gated-pod")(
        on_gated_pod  # type: ignore[arg-type]
    )
    kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry, id="gate-migration")(
        on_migration_event  # type: ignore[arg-type]
    )
