"""The gate keeper: holding, releasing, retrying and warning, with a recording API; no kopf."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from controller_objects import gated_pod_body as pod_body
from migrategate.api import constants as c
from migrategate.controller import gate_decision, metrics
from migrategate.controller.gate_decision import GatedPod, MigrationState
from migrategate.controller.gate_keeper import GateKeeper

V1, V2 = "shop:1", "shop:2"


def migrated(image: str | None) -> MigrationState:
    return MigrationState(exists=True, migrated_image=image)


class FakeKube:
    """Records gate removals and events; `fail` makes the next removals raise."""

    def __init__(self, fail: int = 0) -> None:
        self.removed: list[tuple[str, str, str]] = []
        self.events: list[tuple[str, str, str, str]] = []
        self.fail = fail
        self.gone: set[str] = set()

    async def remove_scheduling_gate(self, namespace: str, name: str, gate: str) -> bool:
        if self.fail:
            self.fail -= 1
            raise OSError("connection reset")
        if name in self.gone:
            return False
        self.removed.append((namespace, name, gate))
        return True

    async def post_event(
        self, involved: dict[str, Any], kind: str, reason: str, message: str
    ) -> None:
        self.events.append((involved["metadata"]["name"], kind, reason, message))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def keeper() -> GateKeeper:
    return GateKeeper(FakeKube(), sleep=Sleeps())


def kube(keeper: GateKeeper) -> FakeKube:
    assert isinstance(keeper.kube, FakeKube)
    return keeper.kube


def send_pod(
    keeper: GateKeeper, body: dict[str, Any], migration: MigrationState, deleted: bool = False
) -> None:
    pod = gate_decision.gated_pod(body)
    asyncio.run(keeper.pod_event(pod, deleted=deleted, lookup=lambda _: migration))


def send_migration(keeper: GateKeeper, image: str | None, gated: list[GatedPod]) -> None:
    asyncio.run(keeper.migration_event("ns", "shop", migrated(image), gated))


def test_new_pod_of_a_migrated_image_is_released_at_once(keeper):
    send_pod(keeper, pod_body(V1), migrated(V1))
    assert kube(keeper).removed == [("ns", "web-1", c.SCHEDULING_GATE)]
    assert keeper.held == {} and ("ns", "web-1") in keeper.released
    # Its next event (gate gone) ends the tracking.
    send_pod(keeper, pod_body(V1, gates=()), gate_decision.MISSING)
    assert keeper.released == set() and not keeper.tracks(("ns", "web-1"))


def test_waiting_pods_are_released_by_their_migrations_event(keeper):
    bodies = [pod_body(V2, name=f"web-{i}") for i in range(3)]
    for body in bodies:
        send_pod(keeper, body, migrated(V1))
    assert kube(keeper).removed == [] and len(keeper.held) == 3
    assert metrics.GATED_PODS._value.get() == 3
    gated = [gate_decision.gated_pod(b) for b in bodies]
    send_migration(keeper, V1, gated)  # status churn that changes nothing
    assert kube(keeper).removed == []
    before = metrics.GATE_WAIT._sum.get()
    send_migration(keeper, V2, gated)
    assert sorted(n for _, n, _ in kube(keeper).removed) == ["web-0", "web-1", "web-2"]
    assert keeper.held == {} and metrics.GATED_PODS._value.get() == 0
    assert metrics.GATE_WAIT._sum.get() > before  # created in 2026-01-01: a long wait
    # A second release of the same pods (e.g. a further status event) counts no second wait.
    total = metrics.GATE_WAIT._sum.get()
    send_migration(keeper, V2, gated)
    assert metrics.GATE_WAIT._sum.get() == total


def test_stale_gated_event_after_release_does_not_hold_again(keeper):
    send_pod(keeper, pod_body(V2), migrated(V2))
    send_pod(keeper, pod_body(V2), migrated(V2))  # still shows the gate
    assert keeper.held == {} and len(kube(keeper).removed) == 1


def test_missing_migration_warns_once_after_the_grace_and_holds(keeper):
    send_pod(keeper, pod_body(V2, migration="nope"), gate_decision.MISSING)
    send_pod(keeper, pod_body(V2, migration="nope"), gate_decision.MISSING)
    assert kube(keeper).removed == []
    assert len(kube(keeper).events) == 1
    name, kind, reason, message = kube(keeper).events[0]
    assert (name, kind, reason) == ("web-1", "Warning", "MigrationNotFound") and "nope" in message
    assert ("ns", "web-1") in keeper.held
    assert keeper.sleep.delays == [keeper.warn_grace_seconds]  # type: ignore[attr-defined]


def test_a_migration_seen_within_the_grace_is_not_warned_about(keeper):
    answers = iter([gate_decision.MISSING, migrated(V2)])
    pod = gate_decision.gated_pod(pod_body(V2))
    asyncio.run(keeper.pod_event(pod, deleted=False, lookup=lambda _: next(answers)))
    assert kube(keeper).events == [] and kube(keeper).removed == [
        ("ns", "web-1", c.SCHEDULING_GATE)
    ]


def test_deleted_pod_is_forgotten(keeper):
    send_pod(keeper, pod_body(V2), migrated(V1))
    assert ("ns", "web-1") in keeper.held
    send_pod(keeper, pod_body(V2), migrated(V1), deleted=True)
    assert keeper.held == {} and keeper.warned == set()


def test_failed_release_is_retried_then_given_up_without_raising(keeper):
    kube(keeper).fail = 2
    send_pod(keeper, pod_body(V2), migrated(V2))
    assert kube(keeper).removed == [("ns", "web-1", c.SCHEDULING_GATE)]
    assert keeper.sleep.delays == [0.2, 1.0]  # type: ignore[attr-defined]
    kube(keeper).fail = 10
    send_pod(keeper, pod_body(V2, name="web-2"), migrated(V2))
    assert ("ns", "web-2") in keeper.held  # still counted as gated: nothing was lifted


def test_a_pod_deleted_before_its_release_is_not_counted_as_released(keeper):
    kube(keeper).gone.add("web-1")
    before = metrics.GATE_WAIT._sum.get()
    send_pod(keeper, pod_body(V2), migrated(V2))
    assert not keeper.tracks(("ns", "web-1")) and metrics.GATE_WAIT._sum.get() == before
