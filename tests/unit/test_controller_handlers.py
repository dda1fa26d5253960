"""kopf adapters: which watch events reach a reconcile, with real kopf Body objects."""

import asyncio

import kopf
from controller_objects import job, pod
from migrategate.api import constants as c
from migrategate.controller.handlers import build_registry
from migrategate.controller.handlers.jobs import finished_or_gone, on_job_event
from migrategate.controller.handlers.pods import cannot_start, on_pod_event


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
    asyncio.run(on_job_event(body=kopf.Body(job(state="complete")), namespace="ns", memo=m))
    asyncio.run(on_pod_event(body=kopf.Body(pod()), namespace="ns", memo=m))
    assert m.reconciler.calls == [("ns", "shop"), ("ns", "shop")]


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
