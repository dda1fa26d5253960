"""kopf adapters: which watch events reach a reconcile or the gate, with real kopf objects."""

import asyncio

import kopf
from controller_objects import gated_pod_body, job, pod
from migrategate.api import constants as c
from migrategate.controller import gate_decision
from migrategate.controller.gate_decision import MigrationState
from migrategate.controller.handlers import build_registry
from migrategate.controller.handlers import gate as gate_handlers
from migrategate.controller.handlers.children import cannot_start, finished_or_gone, on_child_event


class Recorder:
    def __init__(self):
        self.calls = []

    async def reconcile(self, namespace, name):
        self.calls.append((namespace, name))


def memo():
    return kopf.Memo(reconciler=Recorder())


def test_only_finished_or_deleted_jobs_pass_the_filter():
    assert finished_or_gone(type="MODIFIED", body=kopf.Body(job(state="complete")))
    assert finished_or_gone(type="MODIFIED", body=kopf.Body(job(state="failed")))
    assert finished_or_gone(type="DELETED", body=kopf.Body(job()))
    assert not finished_or_gone(type="MODIFIED", body=kopf.Body(job()))


def test_only_pods_that_cannot_start_pass_the_filter():
    stuck = pod(waiting=("CreateContainerConfigError", 'secret "db" not found'))
    assert cannot_start(body=kopf.Body(stuck))
    assert cannot_start(body=kopf.Body(pod(waiting=("ImagePullBackOff", "back-off"))))
    assert cannot_start(body=kopf.Body(pod(waiting=("ErrImagePull", "503"))))  # grace: recheck
    assert cannot_start(body=kopf.Body(pod(init_waiting=("InvalidImageName", "bad"))))
    assert not cannot_start(body=kopf.Body(pod()))
    assert not cannot_start(body=kopf.Body(pod(waiting=("ContainerCreating", ""))))


def test_job_and_pod_events_reconcile_the_migration_they_name():
    m = memo()
    asyncio.run(on_child_event(body=kopf.Body(job(state="complete")), namespace="ns", memo=m))
    asyncio.run(on_child_event(body=kopf.Body(pod()), namespace="ns", memo=m))
    assert m.reconciler.calls == [("ns", "shop"), ("ns", "shop")]


def test_registry_has_no_update_handlers_on_children():
    registry = build_registry()
    changing = registry._changing.get_all_handlers()
    watching = registry._watching.get_all_handlers()
    assert {(h.selector.group, (h.selector.plural or h.selector.any_name)) for h in changing} == {
        (c.GROUP, c.PLURAL)
    }
    plurals = {(h.selector.plural or h.selector.any_name) for h in watching}
    # DatabaseMigrations: the gate's event handler; deployments: the rollout before contract.
    assert plurals == {"jobs", "pods", "deployments", c.PLURAL}
    # Child events are filtered: by labels, or (the gate's and the rollout's) by a callback.
    assert all(h.labels or h.when for h in watching if h.selector.group != c.GROUP)


class RecordingKeeper:
    """Stands in for gate_keeper.GateKeeper: records what the adapters hand it."""

    def __init__(self):
        self.pods = []
        self.migrations = []
        self.tracked = set()

    async def pod_event(self, pod, deleted, lookup):
        self.pods.append((pod.name, deleted, lookup(pod)))

    async def migration_event(self, namespace, name, migration, gated):
        self.migrations.append((namespace, name, migration, [p.name for p in gated]))

    def tracks(self, key):
        return key in self.tracked


def migrated(image):
    return MigrationState(exists=True, migrated_image=image)


def test_gate_indexes_key_pods_and_migrations_by_namespace_and_name():
    indexed = gate_handlers.index_gated_pod(kopf.Body(gated_pod_body()))
    assert list(indexed) == [("ns", "shop")] and indexed[("ns", "shop")].name == "web-1"
    assert gate_handlers.index_gated_pod(kopf.Body(gated_pod_body(migration=None))) == {}
    body = kopf.Body({"metadata": {"name": "shop"}, "status": {"migratedImage": "shop:1"}})
    assert gate_handlers.index_migration(body, name="shop", namespace="ns") == {
        ("ns", "shop"): migrated("shop:1")
    }
    lookup = gate_handlers.lookup_migration
    assert lookup({}, "ns", "shop") == gate_decision.MISSING
    assert lookup({("ns", "shop"): [migrated("shop:1")]}, "ns", None) == gate_decision.MISSING
    assert lookup({("ns", "shop"): [migrated("shop:1")]}, "ns", "shop") == migrated("shop:1")


def test_gate_events_reach_the_keeper_with_the_index_lookup():
    m = kopf.Memo(gate=RecordingKeeper())
    states = {("ns", "shop"): [migrated("shop:2")]}
    for kind in ("MODIFIED", "DELETED"):
        asyncio.run(
            gate_handlers.on_gated_pod(
                event={"type": kind},
                body=kopf.Body(gated_pod_body()),
                memo=m,
                migration_states=states,
            )
        )
    assert m.gate.pods == [
        ("web-1", False, migrated("shop:2")),
        ("web-1", True, migrated("shop:2")),
    ]
    gated = {("ns", "shop"): [gate_decision.gated_pod(gated_pod_body())]}
    body = {"metadata": {"name": "shop", "namespace": "ns"}, "status": {"migratedImage": "shop:2"}}
    for kind in ("MODIFIED", "DELETED"):  # a deleted migration releases nothing
        asyncio.run(
            gate_handlers.on_migration_event(
                event={"type": kind},
                body=kopf.Body(body),
                name="shop",
                namespace="ns",
                memo=m,
                gated_pods=gated,
            )
        )
    assert m.gate.migrations == [("ns", "shop", migrated("shop:2"), ["web-1"])]


def test_gate_filters_see_only_gated_or_tracked_pods():
    m = kopf.Memo(gate=RecordingKeeper())
    spec = kopf.Spec(kopf.Body(gated_pod_body(gates=())))
    assert not gate_handlers._gated(spec=spec)
    assert not gate_handlers._gated_or_held(spec=spec, name="web-1", namespace="ns", memo=m)
    m.gate.tracked.add(("ns", "web-1"))
    assert gate_handlers._gated_or_held(spec=spec, name="web-1", namespace="ns", memo=m)
    assert gate_handlers._gated(spec=kopf.Spec(kopf.Body(gated_pod_body())))
