"""The rollout check between the expand and the contract phase: Deployment and pod facts in."""

from migrategate.api import constants as c
from migrategate.controller.rollout import (
    RolloutFacts,
    deployment_facts,
    label_selector,
    pod_images,
    rollout_progress,
)
from migrategate.controller.rollout_watch import RolloutWatch

NEW = "shop:2"
OLD = "shop:1"


def app_pod(name, image, migration="shop", phase="Running", deleting=False):
    meta = {"name": name, "annotations": {c.ANNOTATION_MIGRATION: migration} if migration else {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": image}, {"name": "p", "image": "envoy"}]},
        "status": {"phase": phase},
    }


def deployment(replicas=5, updated=5, available=5, total=5, generation=2, observed=2):
    return {
        "metadata": {"name": "shop", "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop"}}},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "availableReplicas": available,
        },
    }


def progress(body, pods=()):
    facts = RolloutFacts(deployments=(deployment_facts("shop", body, list(pods)),))
    return rollout_progress(NEW, "shop", facts)


def test_a_finished_rollout_is_done():
    got = progress(deployment(), [app_pod(f"p{i}", NEW) for i in range(5)])
    assert got.done
    assert "deployment/shop finished" in got.message


def test_the_waiting_reason_counts_updated_and_available_replicas():
    got = progress(
        deployment(updated=3, available=2, total=6),
        [app_pod("a", NEW), app_pod("b", OLD), app_pod("c", OLD)],
    )
    assert not got.done
    assert got.message == (
        "waiting for rollout of deployment/shop: 3/5 updated, 2/5 available, 3 old replica(s), "
        "2 pod(s) of another image than shop:2 left (b, c)"
    )


def test_a_generation_not_yet_observed_waits():
    got = progress(deployment(generation=3, observed=2))
    assert not got.done and "generation 3 not yet observed" in got.message


def test_a_missing_deployment_waits_and_says_so():
    got = progress(None)
    assert not got.done and got.message.endswith("deployment/shop: not found")


def test_a_terminating_old_pod_still_counts():
    # Replica counts exclude it already; it may still be finishing requests on the old columns.
    got = progress(deployment(), [app_pod("new", NEW), app_pod("old", OLD, deleting=True)])
    assert not got.done and "1 pod(s) of another image" in got.message


def test_an_ended_old_pod_does_not_count_unless_it_is_being_deleted():
    got = progress(deployment(), [app_pod("new", NEW), app_pod("evicted", OLD, phase="Failed")])
    assert got.done
    # A deleted pod whose containers stopped gets its final phase before the API removes it:
    # it counts until it is gone.
    stopping = app_pod("old", OLD, phase="Failed", deleting=True)
    assert not progress(deployment(), [app_pod("new", NEW), stopping]).done


def test_a_scale_up_during_the_wait_is_not_mistaken_for_the_end():
    # The rollout of 5 had finished when the Deployment was scaled to 8: the new generation
    # is not observed yet, then 5/8 are updated; only 8 new pods finish it.
    pods5 = [app_pod(f"n{i}", NEW) for i in range(5)]
    assert not progress(deployment(replicas=8, generation=3, observed=2), pods5).done
    mid = progress(
        deployment(replicas=8, updated=6, available=5, total=6, generation=3, observed=3)
    )
    assert not mid.done and "6/8 updated, 5/8 available" in mid.message
    pods8 = [app_pod(f"n{i}", NEW) for i in range(8)]
    end = deployment(replicas=8, updated=8, available=8, total=8, generation=3, observed=3)
    assert progress(end, pods8).done


def test_several_deployments_wait_for_each():
    other = deployment_facts("worker", deployment(updated=1), [])
    shop = deployment_facts("shop", deployment(), [app_pod("a", NEW)])
    got = rollout_progress(NEW, "shop", RolloutFacts(deployments=(shop, other)))
    assert not got.done
    assert got.message == (
        "waiting for rollout of deployment/worker: 1/5 updated, 4 old replica(s)"
    )


def test_without_deployments_the_annotated_pods_decide():
    pods = (
        pod_images(app_pod("a", NEW)),
        pod_images(app_pod("b", OLD, migration="other")),  # another migration's pod
        pod_images(app_pod("c", OLD, migration=None)),  # no annotation
    )
    done = rollout_progress(NEW, "shop", RolloutFacts(annotated_pods=pods))
    assert done.done and done.message == (
        f"rollout finished: no pod carrying {c.ANNOTATION_MIGRATION}=shop runs another image "
        "than shop:2"
    )
    old = (*pods, pod_images(app_pod("d", OLD)))
    got = rollout_progress(NEW, "shop", RolloutFacts(annotated_pods=old))
    assert not got.done
    assert got.message == (
        "waiting for rollout: 1 pod(s) of another image than shop:2 left (d) among the pods "
        f"carrying {c.ANNOTATION_MIGRATION}=shop"
    )


def test_many_old_pods_are_counted_and_a_few_named():
    pods = tuple(pod_images(app_pod(f"p{i}", OLD)) for i in range(5))
    got = rollout_progress(NEW, "shop", RolloutFacts(annotated_pods=pods))
    assert "5 pod(s) of another image than shop:2 left (p0, p1, p2, ...)" in got.message


def test_replicas_default_to_one():
    body = deployment()
    del body["spec"]["replicas"]
    assert deployment_facts("shop", body, []).replicas == 1


def test_label_selector_spells_match_labels_and_expressions():
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["web", "api"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "ready", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert label_selector(selector) == ("a=1,b=2,tier in (web,api),env notin (dev),ready,!legacy")


def test_the_watch_wakes_only_waiting_migrations():
    watch = RolloutWatch()
    annotated = {"annotations": {c.ANNOTATION_MIGRATION: "shop"}}
    assert watch.woken_by_pod("ns", annotated) == []
    watch.watch(("ns", "shop"), ())
    watch.watch(("ns", "billing"), ("billing-api",))
    watch.watch(("other", "shop"), ())
    # Without Deployments, only pods that name the migration; with some, any application pod.
    assert watch.woken_by_pod("ns", annotated) == [("ns", "shop"), ("ns", "billing")]
    assert watch.woken_by_pod("ns", {"labels": {"app": "x"}}) == [("ns", "billing")]
    ours = {"labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY}, **annotated}
    assert watch.woken_by_pod("ns", ours) == []  # a migration Job's own pod
    assert watch.woken_by_deployment("ns", "billing-api") == [("ns", "billing")]
    assert watch.woken_by_deployment("ns", "shop") == []
    watch.forget(("ns", "billing"))
    assert watch.woken_by_deployment("ns", "billing-api") == []
