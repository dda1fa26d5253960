"""The rollout gate's pure decision: pod and DatabaseMigration facts in, release or hold out."""

from __future__ import annotations

from datetime import UTC, datetime

from controller_objects import gated_pod_body as pod_body
from migrategate.api import constants as c
from migrategate.controller import gate_decision as gate
from migrategate.controller.gate_decision import MigrationState, Reason

V1, V2 = "shop:1", "shop:2"


def migrated(image: str | None) -> MigrationState:
    return MigrationState(exists=True, migrated_image=image)


def test_pod_is_released_once_its_image_is_migrated():
    d = gate.decide(gate.gated_pod(pod_body(V2)), migrated(V2))
    assert d.release and d.reason is Reason.RELEASED
    assert V2 in d.message and "shop" in d.message


def test_pod_of_the_previous_migrated_image_is_released_while_a_new_one_runs():
    # migratedImage moves only on success: during the v2 migration it still names v1.
    assert gate.decide(gate.gated_pod(pod_body(V1)), migrated(V1)).release


def test_new_image_pod_waits_while_an_older_image_is_the_migrated_one():
    d = gate.decide(gate.gated_pod(pod_body(V2)), migrated(V1))
    assert not d.release and d.reason is Reason.NOT_MIGRATED
    assert V1 in d.message and V2 in d.message


def test_pod_waits_while_nothing_is_migrated_yet():
    d = gate.decide(gate.gated_pod(pod_body(V1)), migrated(None))
    assert not d.release and d.reason is Reason.NOT_MIGRATED and "no image yet" in d.message


def test_missing_migration_holds_with_its_own_reason():
    d = gate.decide(gate.gated_pod(pod_body(V1)), gate.MISSING)
    assert not d.release and d.reason is Reason.MIGRATION_NOT_FOUND and "ns/shop" in d.message


def test_gate_without_annotation_holds():
    d = gate.decide(gate.gated_pod(pod_body(migration=None)), migrated(V2))
    assert not d.release and d.reason is Reason.NO_ANNOTATION


def test_pod_without_our_gate_is_left_alone():
    d = gate.decide(gate.gated_pod(pod_body(gates=("other.io/gate",))), migrated(V2))
    assert not d.release and d.reason is Reason.NOT_GATED


def test_any_container_image_counts_including_init_containers():
    body = pod_body("sidecar:1", init_image=V2)
    assert gate.decide(gate.gated_pod(body), migrated(V2)).release
    assert gate.decide(gate.gated_pod(pod_body(V2)), migrated("shop:2-rc")).release is False


def test_facts_from_a_pod_body():
    facts = gate.gated_pod(pod_body(V2, gates=("other.io/gate", c.SCHEDULING_GATE)))
    assert facts.gated and facts.migration == "shop" and facts.key == ("ns", "web-1")
    assert facts.images == {V2, "envoy:1"}
    assert facts.created == datetime(2026, 1, 1, tzinfo=UTC)
    assert gate.wait_seconds(facts, datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)) == 7.0
    assert gate.migration_state({"status": {"migratedImage": V1}}) == migrated(V1)
    assert gate.migration_state({"spec": {}}) == migrated(None)
