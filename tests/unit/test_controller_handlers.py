"""kopf adapters: which watch events reach a reconcile, with real kopf Body objects."""

import asyncio

import kopf
from controller_objects import job, pod
from migrategate.api import constants as c
from migrategate.controller.handlers import build_registry
from migrategate.controller.handlers.jobs import on_job_event
from migrategate.controller.handlers.pods import on_pod_event


class Recorder:
    def __init__(self):
        self.calls = []

    async def reconcile(self, namespace, name):
        self.calls.append((namespace, name))


def memo():
    return kopf.Memo(reconciler=Recorder())


def send_job(raw, kind="MODIFIED"):
    m = memo()
    body = kopf.Body(raw)
    asyncio.run(
        on_job_event(event={"type": kind, "object": raw}, body=body, namespace="ns", memo=m)
    )
    return m.reconciler.calls


def test_finished_or_deleted_jobs_reconcile_their_migration():
    assert send_job(job(state="complete")) == [("ns", "shop")]
    assert send_job(job(state="failed")) == [("ns", "shop")]
    assert send_job(job(), kind="DELETED") == [("ns", "shop")]


def test_running_job_churn_does_not_reconcile():
    assert send_job(job()) == []


def test_pods_reconcile_only_when_they_cannot_start():
    def send(raw):
        m = memo()
        asyncio.run(on_pod_event(body=kopf.Body(raw), namespace="ns", memo=m))
        return m.reconciler.calls

    stuck = pod(waiting=("CreateContainerConfigError", 'secret "db" not found'))
    assert send(stuck) == [("ns", "shop")]
    assert send(pod()) == []
    assert send(pod(waiting=("ContainerCreating", ""))) == []


def test_registry_has_no_update_handlers_on_children():
    registry = build_registry()
    changing = registry._changing.get_all_handlers()
    watching = registry._watching.get_all_handlers()
    assert {(h.selector.group, (h.selector.plural or h.selector.any_name)) for h in changing} == {
        (c.GROUP, c.PLURAL)
    }
    plurals = {(h.selector.plural or h.selector.any_name) for h in watching}
    assert plurals == {"jobs", "pods", c.PLURAL}  # DatabaseMigrations: the gate's event handler
    # Child events are filtered: by labels, or (the gate's pods) by a callback on the gate.
    assert all(h.labels or h.when for h in watching if h.selector.group != c.GROUP)
