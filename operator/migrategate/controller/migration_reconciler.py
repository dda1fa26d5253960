"""Reconciling one DatabaseMigration: observe, decide (migration_decision, pure), act."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller import metrics, migration_decision, rollout, status
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.kube import Kube
from migrategate.controller.migration_decision import Plan
from migrategate.controller.rollout_watch import RolloutWatch

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)


@dataclass
class Reconciler:
    """Serialises reconciles per DatabaseMigration and keeps the retry timers."""

    kube: Kube
    config: migration_decision.Config
    locks: dict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # keeps timer tasks referenced
    rollouts: RolloutWatch = field(default_factory=RolloutWatch)
    # Nudged migrations whose reconcile has not started yet: a burst of events runs one.
    nudged: set[Key] = field(default_factory=set)
    retry_on_error: float = 5.0  # seconds before a failed reconcile (API error) runs again

    async def reconcile(self, namespace: str, name: str) -> Plan | None:
        """Bring one DatabaseMigration a step closer to its spec; None if it is gone."""
        key = (namespace, name)
        async with self.locks[key]:
            self.nudged.discard(key)  # events from now on need a reconcile after this one
            try:
                plan = await self._reconcile(namespace, name)
            except Exception:
                metrics.RECONCILES.labels(result="error").inc()
                # Event handlers are not retried by kopf: try again soon, whoever called.
                self._requeue(key, self.retry_on_error)
                raise
            metrics.RECONCILES.labels(result="ok").inc()
        if plan is None:
            self._forget(key)
        elif plan.requeue_after is not None:
            self._requeue(key, plan.requeue_after)
        return plan

    def nudge(self, namespace: str, name: str) -> None:
        """Reconcile soon, in a task of its own (a watch event woke it); bursts coalesce."""
        key = (namespace, name)
        if key not in self.nudged:
            self.nudged.add(key)
            self._track(asyncio.get_running_loop().create_task(self._run(key)))

    async def _reconcile(self, namespace: str, name: str) -> Plan | None:
        body = await self.kube.get_migration(namespace, name)
        if body is None:
            return None
        jobs = [job_facts(j) for j in await self.kube.list_jobs(namespace, name)]
        pods = [pod_facts(p) for p in await self.kube.list_pods(namespace, name)] if jobs else []
        now = datetime.now(UTC)
        observed = migration_decision.Observed(body, jobs, pods, now)
        plan = migration_decision.decide(observed, self.config)
        key = (namespace, name)
        if plan.needs_rollout:
            spec = DatabaseMigrationSpec.model_validate(body.get("spec") or {})
            # Watch first, then read: an event after the read reconciles again.
            self.rollouts.watch(key, tuple(spec.gate.deployments))
            facts = await self._rollout_facts(namespace, tuple(spec.gate.deployments))
            plan = migration_decision.decide(replace(observed, rollout=facts), self.config)
        if not plan.watch_rollout:
            self.rollouts.forget(key)
        await self._apply(namespace, name, body, plan)
        return plan

    async def _rollout_facts(
        self, namespace: str, deployments: tuple[str, ...]
    ) -> rollout.RolloutFacts:
        """The listed Deployments and their pods; without any, every pod of the namespace."""
        if not deployments:
            pods = await self.kube.list_namespace_pods(namespace)
            return rollout.RolloutFacts(annotated_pods=tuple(rollout.pod_images(p) for p in pods))
        found = []
        for name in deployments:
            body = await self.kube.get_deployment(namespace, name)
            selector = rollout.label_selector((body or {}).get("spec", {}).get("selector"))
            # A Deployment without a selector matches no pod (the API requires one anyway).
            pods = await self.kube.list_namespace_pods(namespace, selector) if selector else []
            found.append(rollout.deployment_facts(name, body, pods))
        return rollout.RolloutFacts(deployments=tuple(found))

    async def _apply(self, namespace: str, name: str, body: dict[str, Any], plan: Plan) -> None:
        if plan.create is not None:
            job_name = plan.create["metadata"]["name"]
            if await self.kube.create_job(namespace, plan.create):
                metrics.JOBS_CREATED.inc()
                log.info("created Job %s for %s/%s", job_name, namespace, name)
            else:
                log.info("adopted existing Job %s for %s/%s", job_name, namespace, name)
        for job_name in plan.delete:
            await self.kube.delete_job(namespace, job_name)
        patch = status.diff(body.get("status") or {}, plan.status)
        if patch:
            await self.kube.patch_migration_status(namespace, name, patch)
        for kind, reason, message in plan.events:
            await self.kube.post_event(body, kind, reason, message)
        if plan.finished is not None:
            metrics.record_outcome(*plan.finished)

    def _requeue(self, key: Key, delay: float) -> None:
        """Reconcile again when a retry is due (in memory; a restart recomputes it)."""
        self._forget(key)
        loop = asyncio.get_running_loop()
        self.timers[key] = loop.call_later(max(delay, 0.0) + 0.05, self._spawn, key)

    def _spawn(self, key: Key) -> None:
        self._track(asyncio.get_running_loop().create_task(self._timer(key)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _timer(self, key: Key) -> None:
        self.timers.pop(key, None)
        await self._run(key)

    async def _run(self, key: Key) -> None:
        try:
            await self.reconcile(*key)
        except Exception:  # reconcile() has requeued itself already
            log.exception("reconcile of %s/%s failed", *key)

    def _forget(self, key: Key) -> None:
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for key in list(self.timers):
            self._forget(key)
        self.rollouts.waiting.clear()
