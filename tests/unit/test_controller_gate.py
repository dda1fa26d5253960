"""The rollout gate: the pure decision, and the kopf adapters with a recording Kube."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from migrategate.api import constants as c
from migrategate.controller import gate, metrics
from migrategate.controller.gate import MigrationState, Reason
from migrategate.controller.handlers import gate as handlers

V1, V2 = "shop:1", "shop:2"


def pod_body(
    image: str = V2,
    *,
    name: str = "web-1",
    migration: str | None = "shop",
    gates: tuple[str, ...] = (c.SCHEDULING_GATE,),
    init_image: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    annotations = {c.ANNOTATION_MIGRATION: migration} if migration else {}
    spec: dict[str, Any] = {
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


def migrated(image: str | None) -> MigrationState:
    return MigrationState(exists=True, migrated_image=image)


# ----------------------------------------------------------------------------- the decision


def test_pod_is_released_once_its_image_is_migrated():
    d = gate.decide(gate.pod_facts(pod_body(V2)), migrated(V2))
    assert d.release and d.reason is Reason.RELEASED
    assert V2 in d.message and "shop" in d.message


def test_pod_of_the_previous_migrated_image_is_released_while_a_new_one_runs():
    # migratedImage moves only on success: during the v2 migration it still names v1.
    assert gate.decide(gate.pod_facts(pod_body(V1)), migrated(V1)).release


def test_new_image_pod_waits_while_an_older_image_is_the_migrated_one():
    d = gate.decide(gate.pod_facts(pod_body(V2)), migrated(V1))
    assert not d.release and d.reason is Reason.NOT_MIGRATED
    assert V1 in d.message and V2 in d.message


def test_pod_waits_while_nothing_is_migrated_yet():
    d = gate.decide(gate.pod_facts(pod_body(V1)), migrated(None))
    assert not d.release and d.reason is Reason.NOT_MIGRATED and "no image yet" in d.message


def test_missing_migration_holds_with_its_own_reason():
    d = gate.decide(gate.pod_facts(pod_body(V1)), gate.MISSING)
    assert not d.release and d.reason is Reason.MIGRATION_NOT_FOUND and "ns/shop" in d.message


def test_gate_without_annotation_holds():
    d = gate.decide(gate.pod_facts(pod_body(migration=None)), migrated(V2))
    assert not d.release and d.reason is Reason.NO_ANNOTATION


def test_pod_without_our_gate_is_left_alone():
    d = gate.decide(gate.pod_facts(pod_body(gates=("other.io/gate",))), migrated(V2))
    assert not d.release and d.reason is Reason.NOT_GATED


def test_any_container_image_counts_including_init_containers():
    body = pod_body("sidecar:1", init_image=V2)
    assert gate.decide(gate.pod_facts(body), migrated(V2)).release
    assert gate.decide(gate.pod_facts(pod_body(V2)), migrated("shop:2-rc")).release is False


def test_facts_from_a_pod_body():
    facts = gate.pod_facts(pod_body(V2, gates=("other.io/gate", c.SCHEDULING_GATE)))
    assert facts.gated and facts.migration == "shop" and facts.key == ("ns", "web-1")
    assert facts.images == {V2, "envoy:1"}
    assert facts.created == datetime(2026, 1, 1, tzinfo=UTC)
    assert gate.wait_seconds(facts, datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)) == 7.0
    assert gate.migration_state({"status": {"migratedImage": V1}}) == migrated(V1)
    assert gate.migration_state({"spec": {}}) == migrated(None)


# ----------------------------------------------------------------------------- the adapters


class FakeKube:
    """Records gate removals and events; `fail` makes the next removals raise."""

    def __init__(self, fail: int = 0) -> None:
        self.removed: list[tuple[str, str, str]] = []
        self.events: list[tuple[str, str, str, str]] = []
        self.fail = fail

    async def remove_scheduling_gate(self, namespace: str, name: str, gate_name: str) -> bool:
        if self.fail:
            self.fail -= 1
            raise OSError("connection reset")
        self.removed.append((namespace, name, gate_name))
        return True

    async def post_event(self, involved: dict, kind: str, reason: str, message: str) -> None:
        self.events.append((involved["metadata"]["name"], kind, reason, message))


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> kopf.Memo:
    monkeypatch.setattr(handlers, "WARN_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.0, 0.0))
    m = kopf.Memo(kube=FakeKube())
    asyncio.run(handlers.on_startup(memo=m))
    return m


def send_pod(memo: kopf.Memo, body: dict, states: dict, kind: str = "MODIFIED") -> None:
    asyncio.run(
        handlers.on_gated_pod(
            event={"type": kind}, body=kopf.Body(body), memo=memo, migration_states=states
        )
    )


def send_migration(memo: kopf.Memo, image: str | None, gated: dict, name: str = "shop") -> None:
    body = {"metadata": {"name": name, "namespace": "ns"}, "status": {"migratedImage": image}}
    asyncio.run(
        handlers.on_migration_event(
            event={"type": "MODIFIED"},
            body=kopf.Body(body),
            name=name,
            namespace="ns",
            memo=memo,
            gated_pods=gated,
        )
    )


def test_indexes_key_pods_and_migrations_by_namespace_and_name():
    indexed = handlers.index_gated_pod(kopf.Body(pod_body(V2)))
    assert list(indexed) == [("ns", "shop")] and indexed[("ns", "shop")].name == "web-1"
    assert handlers.index_gated_pod(kopf.Body(pod_body(migration=None))) == {}
    body = kopf.Body({"metadata": {"name": "shop"}, "status": {"migratedImage": V1}})
    assert handlers.index_migration(body, name="shop", namespace="ns") == {
        ("ns", "shop"): migrated(V1)
    }
    assert handlers.lookup_migration({}, "ns", "shop") == gate.MISSING
    assert handlers.lookup_migration({("ns", "shop"): [migrated(V1)]}, "ns", None) == gate.MISSING


def test_new_pod_of_a_migrated_image_is_released_at_once(memo):
    send_pod(memo, pod_body(V1), {("ns", "shop"): [migrated(V1)]})
    assert memo.kube.removed == [("ns", "web-1", c.SCHEDULING_GATE)]
    assert memo.gate.held == {} and ("ns", "web-1") in memo.gate.released
    # Its next event (gate gone) ends the tracking.
    send_pod(memo, pod_body(V1, gates=()), {})
    assert memo.gate.released == set()


def test_waiting_pods_are_released_by_their_migrations_event(memo):
    states = {("ns", "shop"): [migrated(V1)]}
    bodies = [pod_body(V2, name=f"web-{i}") for i in range(3)]
    for body in bodies:
        send_pod(memo, body, states)
    assert memo.kube.removed == [] and len(memo.gate.held) == 3
    assert metrics.GATED_PODS._value.get() == 3
    gated = {("ns", "shop"): [gate.pod_facts(b) for b in bodies]}
    send_migration(memo, V1, gated)  # status churn that changes nothing
    assert memo.kube.removed == []
    before = metrics.GATE_WAIT._sum.get()
    send_migration(memo, V2, gated)
    assert sorted(n for _, n, _ in memo.kube.removed) == ["web-0", "web-1", "web-2"]
    assert memo.gate.held == {} and metrics.GATED_PODS._value.get() == 0
    assert metrics.GATE_WAIT._sum.get() > before  # created in 2026-01-01: a long wait
    # A second release of the same pods (e.g. a further status event) counts no second wait.
    total = metrics.GATE_WAIT._sum.get()
    send_migration(memo, V2, gated)
    assert metrics.GATE_WAIT._sum.get() == total


def test_stale_gated_event_after_release_does_not_hold_again(memo):
    send_pod(memo, pod_body(V2), {("ns", "shop"): [migrated(V2)]})
    send_pod(memo, pod_body(V2), {("ns", "shop"): [migrated(V2)]})  # still shows the gate
    assert memo.gate.held == {} and len(memo.kube.removed) == 1


def test_missing_migration_warns_once_and_holds(memo):
    send_pod(memo, pod_body(V2, migration="nope"), {})
    send_pod(memo, pod_body(V2, migration="nope"), {})
    assert memo.kube.removed == []
    assert len(memo.kube.events) == 1
    name, kind, reason, message = memo.kube.events[0]
    assert (name, kind, reason) == ("web-1", "Warning", "MigrationNotFound") and "nope" in message
    assert ("ns", "web-1") in memo.gate.held


def test_deleted_pod_is_forgotten(memo):
    send_pod(memo, pod_body(V2), {})
    assert ("ns", "web-1") in memo.gate.held
    send_pod(memo, pod_body(V2), {}, kind="DELETED")
    assert memo.gate.held == {} and memo.gate.warned == set()


def test_failed_release_is_retried_then_given_up_without_raising(memo):
    memo.kube.fail = 2
    send_pod(memo, pod_body(V2), {("ns", "shop"): [migrated(V2)]})
    assert memo.kube.removed == [("ns", "web-1", c.SCHEDULING_GATE)]
    memo.kube.fail = 10
    send_pod(memo, pod_body(V2, name="web-2"), {("ns", "shop"): [migrated(V2)]})
    assert ("ns", "web-2") in memo.gate.held  # still counted as gated: nothing was lifted


def test_filters_see_only_gated_or_tracked_pods(memo):
    spec = kopf.Spec(kopf.Body(pod_body(V2, gates=())))
    assert not handlers._gated(spec=spec)
    assert not handlers._gated_or_held(spec=spec, name="web-1", namespace="ns", memo=memo)
    memo.gate.hold(gate.pod_facts(pod_body(V2)))
    assert handlers._gated_or_held(spec=spec, name="web-1", namespace="ns", memo=memo)
    assert handlers._gated(spec=kopf.Spec(kopf.Body(pod_body(V2))))
