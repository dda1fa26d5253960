"""The rollout gate at work: holds gated pods, releases them, retries, warns. No kopf.

gate_decision.py decides release or hold; this module acts on it through the API
(`remove_scheduling_gate`, `post_event`) and keeps what this process has seen:
the pods it holds (the `migrategate_gated_pods` gauge), those it released (until
their gate-less event arrives) and those it warned about. handlers/gate.py feeds
it from kopf's watch events and indexes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes_asyncio.client.exceptions import ApiException

from migrategate.api import constants as c
from migrategate.controller import gate_decision, metrics
from migrategate.controller.gate_decision import Decision, GatedPod, MigrationState, Reason

log = logging.getLogger(__name__)
PodKey = tuple[str, str]  # (namespace, name)
# A failed release is retried in place: no later event may come.
RETRY_DELAYS: tuple[float, ...] = (0.2, 1.0, 3.0)
WARN_REASONS = (Reason.NO_ANNOTATION, Reason.MIGRATION_NOT_FOUND)
# A chart applies the Deployment and its DatabaseMigration together; the pod may be seen first.
WARN_GRACE_SECONDS = 3.0


class GateApi(Protocol):
    """The two API calls the gate makes (controller.kube.Kube has them)."""

    async def remove_scheduling_gate(self, namespace: str, name: str, gate: str) -> bool: ...

    async def post_event(
        self, involved: dict[str, Any], kind: str, reason: str, message: str
    ) -> None: ...


@dataclass
class GateKeeper:
    """Gated pods seen by this process (the gauge), pods released and pods warned about."""

    kube: GateApi
    retry_delays: tuple[float, ...] = RETRY_DELAYS
    warn_grace_seconds: float = WARN_GRACE_SECONDS
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    held: dict[PodKey, GatedPod] = field(default_factory=dict)
    released: set[PodKey] = field(default_factory=set)  # until their gate-less event arrives
    warned: set[PodKey] = field(default_factory=set)

    def tracks(self, key: PodKey) -> bool:
        return key in self.held or key in self.released

    async def pod_event(
        self, pod: GatedPod, deleted: bool, lookup: Callable[[GatedPod], MigrationState]
    ) -> None:
        """A gated (or tracked) pod changed: hold it, warn about it, or release it.

        `lookup` reads the pod's DatabaseMigration from the index, now: it is asked
        again after the warning grace, by when the index may have caught up.
        """
        if deleted or not pod.gated:
            self._forget(pod.key)  # gone, or released (by us or someone else)
            return
        if pod.key in self.released:
            return  # an event from before our release landed
        self._hold(pod)
        decision = gate_decision.decide(pod, lookup(pod))
        if decision.reason in WARN_REASONS and pod.key not in self.warned:
            await self.sleep(self.warn_grace_seconds)
            decision = gate_decision.decide(pod, lookup(pod))
            if decision.reason in WARN_REASONS and pod.key in self.held:
                await self._warn(pod, decision)
        if decision.release:
            await self.release([(pod, decision)])

    async def migration_event(
        self, namespace: str, name: str, migration: MigrationState, gated: Iterable[GatedPod]
    ) -> None:
        """A DatabaseMigration changed: release those of its gated pods that are now due."""
        decisions = [(p, gate_decision.decide(p, migration)) for p in gated]
        due = [(p, d) for p, d in decisions if d.release]
        if decisions:
            log.info(
                "%s/%s has migrated %s: %d gated pods, %d due",
                *(namespace, name, migration.migrated_image, len(decisions), len(due)),
            )
        await self.release(due)

    async def release(self, pods: Iterable[tuple[GatedPod, Decision]]) -> None:
        """Lift the gate from each pod, concurrently; a failure on one does not hold the others."""
        await asyncio.gather(*(self._release_one(pod, decision) for pod, decision in pods))

    async def _release_one(self, pod: GatedPod, decision: Decision) -> None:
        for delay in (*self.retry_delays, None):
            try:
                present = await self.kube.remove_scheduling_gate(
                    pod.namespace, pod.name, c.SCHEDULING_GATE
                )
                break
            except (ApiException, OSError, TimeoutError) as e:
                if delay is None:
                    log.error("could not lift the gate of %s/%s: %s", pod.namespace, pod.name, e)
                    return
                await self.sleep(delay)
        if not present:
            self._forget(pod.key)  # deleted meanwhile: nothing was released
            return
        # Count each pod's wait once, though its own event and its migration's may both release it.
        if self._mark_released(pod.key) is not None:
            waited = gate_decision.wait_seconds(pod, datetime.now(UTC))
            if waited is not None:
                metrics.GATE_WAIT.observe(waited)
        log.info("released pod %s/%s: %s", pod.namespace, pod.name, decision.message)

    async def _warn(self, pod: GatedPod, decision: Decision) -> None:
        self.warned.add(pod.key)
        log.warning("pod %s/%s stays gated: %s", pod.namespace, pod.name, decision.message)
        ref = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        }
        await self.kube.post_event(ref, "Warning", decision.reason, decision.message)

    def _hold(self, pod: GatedPod) -> None:
        self.held[pod.key] = pod
        metrics.GATED_PODS.set(len(self.held))

    def _mark_released(self, key: PodKey) -> GatedPod | None:
        """Record our release; the pod it held, or None if another call released it first."""
        self.released.add(key)
        pod = self.held.pop(key, None)
        metrics.GATED_PODS.set(len(self.held))
        return pod

    def _forget(self, key: PodKey) -> None:
        self.held.pop(key, None)
        self.released.discard(key)
        self.warned.discard(key)
        metrics.GATED_PODS.set(len(self.held))
