"""Between the phases: the reconciler reads the rollout only when asked, watches before it
reads, and pod and Deployment events (the kopf adapters) nudge only waiting migrations."""

import asyncio

import kopf
from controller_objects import job, pod, result
from migrategate.api import constants as c
from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller.handlers import rollout as rollout_handlers
from migrategate.controller.migration_decision import Config
from migrategate.controller.migration_reconciler import Reconciler
from migrategate.controller.naming import content_hash
from migrategate.controller.rollout_watch import RolloutWatch

SPEC = {
    "image": "app:2",
    "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
    "gate": {"deployments": ["web"]},
}
CHASH = content_hash(DatabaseMigrationSpec.model_validate(SPEC))
EXPAND = f"shop-{CHASH}"
PHASED = {
    "phase": "expand",
    "hasContractBranch": True,
    "expandHeads": ["0004"],
    "contractHeads": ["0004c"],
}


def app_pod(name, image):
    return {
        "metadata": {"name": name, "annotations": {c.ANNOTATION_MIGRATION: "shop"}},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {"phase": "Running"},
    }


class RolloutKube:
    """The API as the reconciler sees it after the expand Job: one Deployment mid-rollout."""

    def __init__(self, old_pods=1):
        self.body = {
            "apiVersion": "migrategate.io/v1alpha1",
            "kind": "DatabaseMigration",
            "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": SPEC,
        }
        self.jobs = [job(name=EXPAND, chash=CHASH, state="complete", image="app:2")]
        self.job_pods = [pod(EXPAND, 0, result(0, **PHASED), phase="Succeeded")]
        self.app_pods = [app_pod("web-new", "app:2")]
        self.app_pods += [app_pod(f"web-old-{i}", "app:1") for i in range(old_pods)]
        self.reads = []
        self.created = []
        self.watching_during_read = None
        self.watch = None

    async def get_migration(self, namespace, name):
        return self.body

    async def list_jobs(self, namespace, name):
        return self.jobs

    async def list_pods(self, namespace, name):
        return self.job_pods

    async def get_deployment(self, namespace, name):
        self.reads.append(("deployment", name))
        self.watching_during_read = dict(self.watch.waiting)
        return {
            "metadata": {"name": name, "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
            "status": {
                "observedGeneration": 1,
                "replicas": 1,
                "updatedReplicas": 1,
                "availableReplicas": 1,
            },
        }

    async def list_namespace_pods(self, namespace, label_selector=""):
        self.reads.append(("pods", label_selector))
        return self.app_pods

    async def create_job(self, namespace, body):
        self.created.append(body["metadata"]["name"])
        return True

    async def delete_job(self, namespace, name):
        pass

    async def patch_migration_status(self, namespace, name, status):
        self.body = {**self.body, "status": {**self.body.get("status", {}), **status}}

    async def post_event(self, involved, kind, reason, message):
        pass


def test_the_reconciler_watches_before_it_reads_and_forgets_once_the_contract_starts():
    async def go():
        kube = RolloutKube(old_pods=1)
        rec = Reconciler(kube, Config(runner_image="r:1"))
        kube.watch = rec.rollouts
        waiting = await rec.reconcile("ns", "shop")
        assert kube.watching_during_read == {("ns", "shop"): ("web",)}
        assert kube.reads == [("deployment", "web"), ("pods", "app=web")]
        assert waiting.watch_rollout and rec.rollouts.waiting == {("ns", "shop"): ("web",)}
        assert kube.body["status"]["phases"]["contract"]["state"] == "WaitingForRollout"
        kube.app_pods = kube.app_pods[:1]  # the last old pod is gone
        started = await rec.reconcile("ns", "shop")
        assert kube.created == [f"{EXPAND}-contract"]
        assert not started.watch_rollout and rec.rollouts.waiting == {}

    asyncio.run(go())


def test_nudges_coalesce_into_one_reconcile_per_burst():
    async def go():
        kube = RolloutKube(old_pods=1)
        rec = Reconciler(kube, Config(runner_image="r:1"))
        kube.watch = rec.rollouts
        for _ in range(5):
            rec.nudge("ns", "shop")
        await asyncio.gather(*rec.tasks)
        return kube.reads

    reads = asyncio.run(go())
    assert reads.count(("deployment", "web")) == 1


class NudgeRecorder:
    def __init__(self):
        self.rollouts = RolloutWatch()
        self.nudged = []

    def nudge(self, namespace, name):
        self.nudged.append((namespace, name))


def test_pod_and_deployment_events_nudge_only_waiting_migrations():
    reconciler = NudgeRecorder()
    memo = kopf.Memo(reconciler=reconciler)
    meta = kopf.Meta({"metadata": {"name": "web-1", "labels": {"app": "web"}}})
    assert not rollout_handlers._pod_wakes(namespace="ns", meta=meta, memo=memo)
    assert not rollout_handlers._deployment_wakes(namespace="ns", name="web", memo=memo)
    reconciler.rollouts.watch(("ns", "shop"), ("web",))
    assert rollout_handlers._pod_wakes(namespace="ns", meta=meta, memo=memo)
    assert not rollout_handlers._pod_wakes(namespace="other", meta=meta, memo=memo)
    assert rollout_handlers._deployment_wakes(namespace="ns", name="web", memo=memo)
    asyncio.run(rollout_handlers.on_pod(namespace="ns", meta=meta, memo=memo))
    asyncio.run(rollout_handlers.on_deployment(namespace="ns", name="web", memo=memo))
    assert reconciler.nudged == [("ns", "shop"), ("ns", "shop")]
