"""Expand/contract latency on the local cluster: last old pod gone -> contract Job created.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench contract -- [--runs 20]

Per run: a fresh database, one running pod of the old image (sample ec-v1) carrying the
migrategate.io/migration annotation, and a DatabaseMigration of ec-v2 (a contract branch)
with no gate.deployments, so the operator waits for that pod. Once the status says
WaitingForRollout (expand done), the bench deletes the pod (grace period 0). From the
bench's own watch events (tests/cluster/gatewatch.py, in a child process) it takes the
arrival of the pod's DELETED event and of the contract Job's ADDED event. Reported:
p50/p95 of that gap (the goal: p95 <= 300 ms), and the contract Job's run to Ready for
context. The first `--warmup` runs are not counted (a fresh API server's first paths).

It starts, in its own namespaces (bench/cluster.py), the cluster with its real node,
PostgreSQL and the operator installed by its Helm chart as a pod: the wait is the
operator's watch of pods, nothing polls.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import gatewatch
import operatorkit
import pgserver
from kubeharness import manifests as m
from kubeharness.wait import eventually
from migrategate.api import constants as c

from bench import cluster
from bench.stats import summary

NAMESPACE = "contract-bench"
STYLE = "seed004_ini_url"
OLD, NEW = "ec-v1", "ec-v2"
GOAL_P95_MS = 300


@dataclass
class Run:
    gone_to_created: float  # the old pod's DELETED -> the contract Job's ADDED
    created_to_ready: float  # the contract Job's ADDED -> the DatabaseMigration's Ready=True


def old_pod(name: str, image: str) -> dict[str, Any]:
    pod = m.pod(
        f"{name}-old",
        m.container("app", "exec sleep infinity", image=image),
        terminationGracePeriodSeconds=0,
    )
    pod["metadata"]["annotations"] = {c.ANNOTATION_MIGRATION: name}
    return pod


def one_run(cp: Any, pg: pgserver.PgServer, images: dict[str, str], i: int) -> Run:
    name = f"bench-{i:03d}"
    ns = operatorkit.Cluster(cp, NAMESPACE)
    ns.new_database(pg, secret=name)
    ns.apply(old_pod(name, images[OLD]))
    rec = cluster.recorder(cp, NAMESPACE)
    try:
        ns.migration(name, images[NEW], name)
        eventually(lambda: _waiting(rec, name), timeout=180)
        ns.kubectl("delete", "pod", f"{name}-old", "--grace-period=0", "--wait=false")
        ready = eventually(lambda: _ready_at(rec, name), timeout=180)
        gone = _deleted_at(rec, f"{name}-old")
        created = _contract_job_added_at(rec, name)
    finally:
        rec.stop()
    return Run(created - gone, ready - created)


def _waiting(rec: gatewatch.Recorder, name: str) -> None:
    states = [_contract_state(e.obj) for e in rec.events("DatabaseMigration") if e.name == name]
    assert "WaitingForRollout" in states, states


def _contract_state(obj: dict[str, Any]) -> str | None:
    phases = (obj.get("status") or {}).get("phases") or {}
    return (phases.get("contract") or {}).get("state")


def _ready_at(rec: gatewatch.Recorder, name: str) -> float:
    for e in rec.events("DatabaseMigration"):
        conds = (e.obj.get("status") or {}).get("conditions") or []
        ready = any(x["type"] == "Ready" and x["status"] == "True" for x in conds)
        if e.name == name and ready and _contract_state(e.obj) == "Succeeded":
            return e.at
    raise AssertionError(f"{name} is not Ready yet")


def _deleted_at(rec: gatewatch.Recorder, pod: str) -> float:
    for e in rec.events("Pod"):
        if e.name == pod and e.type == "DELETED":
            return e.at
    raise AssertionError(f"no DELETED event for pod {pod}")


def _contract_job_added_at(rec: gatewatch.Recorder, name: str) -> float:
    for e in rec.events("Job"):
        labels = e.obj["metadata"].get("labels", {})
        contract = labels.get(c.LABEL_JOB_KIND) == c.JOB_KIND_CONTRACT
        if e.type == "ADDED" and contract and labels.get(c.LABEL_MIGRATION) == name:
            return e.at
    raise AssertionError(f"no contract Job of {name}")


def main(argv: list[str] | None = None) -> int:
    parser = cluster.arguments("contract", __doc__, runs=20, warmup=True)
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    apps = ((STYLE, OLD), (STYLE, NEW))
    status = cluster.isolated("contract", raw, lambda: cluster.build_images(*apps))
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        images = {version: stack.images.app(STYLE, version) for version in (OLD, NEW)}
        total = args.warmup + args.runs
        runs = [one_run(stack.cp, stack.pg, images, i) for i in range(total)]
    warmup, runs = runs[: args.warmup], runs[args.warmup :]
    results = {
        "warmup_runs_ms": [round(r.gone_to_created * 1000, 1) for r in warmup],
        "last_old_pod_gone_to_contract_job_created": summary([r.gone_to_created for r in runs]),
        "contract_job_created_to_ready": summary([r.created_to_ready for r in runs]),
        "runs_ms": [round(r.gone_to_created * 1000, 1) for r in runs],
        "goal_p95_ms": GOAL_P95_MS,
    }
    summary_ = results["last_old_pod_gone_to_contract_job_created"]
    results["met"] = summary_["p95_ms"] <= GOAL_P95_MS
    return cluster.publish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
