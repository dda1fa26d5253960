"""The reconcile loop around the pure decision: apply a plan, retry after API errors."""

import asyncio

import pytest
from controller_objects import job
from migrategate.controller.migration_decision import Config
from migrategate.controller.migration_reconciler import Reconciler

HASH = "migrategate.io/content-hash"
SPEC = {"image": "app:1", "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}}}


class FakeKube:
    """Records calls; `failures` GETs raise before the object is returned."""

    def __init__(self, failures=0):
        self.failures = failures
        self.body = {
            "apiVersion": "migrategate.io/v1alpha1",
            "kind": "DatabaseMigration",
            "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": SPEC,
        }
        self.jobs = []
        self.calls = []

    async def get_migration(self, namespace, name):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("API server away")
        return self.body

    async def list_jobs(self, namespace, name):
        return self.jobs

    async def list_pods(self, namespace, name):
        return []

    async def create_job(self, namespace, body):
        self.calls.append(("create", body["metadata"]["name"]))
        self.jobs.append(
            job(
                name=body["metadata"]["name"],
                chash=body["metadata"]["labels"]["migrategate.io/content-hash"],
            )
        )
        return True

    async def delete_job(self, namespace, name):
        self.calls.append(("delete", name))

    async def patch_migration_status(self, namespace, name, status):
        self.calls.append(("status", sorted(status)))
        self.body = {**self.body, "status": {**self.body.get("status", {}), **status}}

    async def post_event(self, involved, kind, reason, message):
        self.calls.append(("event", reason))


def test_plan_is_applied_and_a_second_reconcile_is_a_no_op():
    async def go():
        kube = FakeKube()
        rec = Reconciler(kube, Config(runner_image="r:1"))
        await rec.reconcile("ns", "shop")
        first = list(kube.calls)
        await rec.reconcile("ns", "shop")  # the Job is there now, with its start time
        second = kube.calls[len(first) :]
        await rec.reconcile("ns", "shop")
        return first, second, kube.calls[len(first) + len(second) :]

    first, second, third = asyncio.run(go())
    assert first == [
        ("create", first[0][1]),
        ("status", first[1][1]),
        ("event", "JobCreated"),
    ]
    assert second == [("status", ["startedAt"])]  # adopted: no create, no new Event
    assert third == []  # nothing changed, nothing written


def test_api_error_requeues_the_reconcile():
    async def go():
        kube = FakeKube(failures=1)
        rec = Reconciler(kube, Config(runner_image="r:1"), retry_on_error=0.01)
        with pytest.raises(ConnectionError):
            await rec.reconcile("ns", "shop")
        for _ in range(100):
            if kube.calls:
                break
            await asyncio.sleep(0.01)
        rec.close()
        return kube.calls

    calls = asyncio.run(go())
    assert calls and calls[0][0] == "create"
