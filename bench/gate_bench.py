"""Rollout-gate latency on the local cluster: Job Complete -> last gated pod released.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench gate -- [--runs 10] [--replicas 10]

Per run: a fresh database, a DatabaseMigration (sample v2, whose revision 0004
waits on an advisory lock the bench holds) and a Deployment of `--replicas`
gated pods, applied together. Once every pod exists, gated, and the Job runs,
the bench unlocks. From the bench's own watch events (tests/cluster/gatewatch.py)
it takes the arrival of the Job's Complete=True and of each pod's first event
without the gate. Reported: per run, Job Complete -> last pod released (the goal:
p95 <= 500 ms), and per pod, Job Complete -> that pod released. The first
`--warmup` runs are not counted: a fresh API server's first strategic-merge patch
of a pod and the operator's first TLS connections cost some 300 ms once. The
watches run in a child process, so that nothing the bench process does (its
polling, kubectl calls) delays their arrival times.

It starts, in its own namespaces (bench/cluster.py), the cluster with its real
node, PostgreSQL and the operator installed by its Helm chart as a pod. The
released pods are scheduled by the real kube-scheduler and started by the
kubelet on the same 2 cores while the gate lifts the others.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import gatewatch
import operatorkit
import pgserver
import samples
from kubeharness import manifests as m
from kubeharness.wait import eventually
from migrategate.api import constants as c

from bench import cluster
from bench.stats import summary

NAMESPACE = "gate-bench"
STYLE, VERSION = "seed004_ini_url", "v2"
GOAL_P95_MS = 500


def manifests(name: str, image: str, replicas: int) -> list[dict[str, Any]]:
    """A DatabaseMigration and a Deployment whose pods wait for it, as the example chart does
    (their pods pass the namespace's restricted Pod Security profile)."""
    migration = operatorkit.migration_manifest(name, image, name)
    app = m.container("app", "exec sleep infinity", image=image)
    deployment = m.deployment(
        name,
        replicas,
        app,
        labels={"app.kubernetes.io/name": name},
        annotations={c.ANNOTATION_MIGRATION: name},
        schedulingGates=[{"name": c.SCHEDULING_GATE}],
        # sleep as PID 1 ignores SIGTERM: do not keep each deleted pod for 30 s
        terminationGracePeriodSeconds=0,
    )
    return [migration, deployment]


@dataclass
class Run:
    last: float  # Job Complete -> last pod released
    pods: list[float]  # Job Complete -> each pod released
    status: float  # Job Complete -> the DatabaseMigration's event with the new migratedImage


def one_run(cp: Any, pg: pgserver.PgServer, image: str, i: int, replicas: int) -> Run:
    name = f"bench-{i:03d}"
    ns = operatorkit.Cluster(cp, NAMESPACE)
    db = ns.new_database(pg, secret=name)
    rec = cluster.recorder(cp, NAMESPACE)
    try:
        with pg.admin_connection(db) as blocker:
            blocker.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
            ns.apply(*manifests(name, image, replicas))
            eventually(lambda: _all_gated_and_job_running(rec, name, replicas), timeout=120)
            blocker.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
        try:
            released = eventually(lambda: _released(rec, name, replicas), timeout=120)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{ns.kubectl('get', 'dbm', name, '-o', 'yaml')}") from e
        complete = _job_complete_at(rec, name)
        migrated = _migrated_at(rec, name, image)
    finally:
        rec.stop()
    ns.kubectl("delete", "deployment", name, "--wait=false")
    per_pod = [t - complete for t in released.values()]
    return Run(max(per_pod), per_pod, migrated - complete)


def _pods(rec: gatewatch.Recorder, name: str) -> list[gatewatch.Event]:
    return [
        e
        for e in rec.events("Pod")
        if e.obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == name
    ]


def _all_gated_and_job_running(rec: gatewatch.Recorder, name: str, replicas: int) -> None:
    latest = {e.name: e.obj for e in _pods(rec, name)}
    assert len(latest) == replicas and all(gatewatch.gated(p) for p in latest.values()), latest
    pods = [
        e
        for e in rec.events("Pod")
        if e.obj["metadata"].get("labels", {}).get(c.LABEL_MIGRATION) == name
    ]
    assert any((p.obj.get("status") or {}).get("phase") == "Running" for p in pods)


def _released(rec: gatewatch.Recorder, name: str, replicas: int) -> dict[str, float]:
    first: dict[str, float] = {}
    for e in _pods(rec, name):
        if not gatewatch.gated(e.obj):
            first.setdefault(e.name, e.at)
    assert len(first) == replicas, first
    return first


def _job_complete_at(rec: gatewatch.Recorder, name: str) -> float:
    for e in rec.events("Job"):
        labels = e.obj["metadata"].get("labels", {})
        if labels.get(c.LABEL_MIGRATION) == name and gatewatch.job_complete(e.obj):
            return e.at
    raise AssertionError(f"no Complete event for the Job of {name}")


def _migrated_at(rec: gatewatch.Recorder, name: str, image: str) -> float:
    for e in rec.events("DatabaseMigration"):
        if e.name == name and (e.obj.get("status") or {}).get("migratedImage") == image:
            return e.at
    raise AssertionError(f"no event with {name}'s migratedImage")


def main(argv: list[str] | None = None) -> int:
    parser = cluster.arguments("gate", __doc__, runs=10, warmup=True)
    parser.add_argument("--replicas", type=int, default=10)
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    status = cluster.isolated("gate", raw, lambda: cluster.build_images((STYLE, VERSION)))
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        image = stack.images.app(STYLE, VERSION)
        total = args.warmup + args.runs
        runs = [one_run(stack.cp, stack.pg, image, i, args.replicas) for i in range(total)]
    warmup, runs = runs[: args.warmup], runs[args.warmup :]
    results = {
        "replicas": args.replicas,
        "warmup_runs_last_ms": [round(r.last * 1000, 1) for r in warmup],
        "job_complete_to_last_pod_released": summary([r.last for r in runs]),
        "job_complete_to_each_pod_released": summary([t for r in runs for t in r.pods]),
        # The two parts: the operator's reconcile writing migratedImage, then the gate.
        "job_complete_to_migrated_image": summary([r.status for r in runs]),
        "migrated_image_to_last_pod_released": summary([r.last - r.status for r in runs]),
        "runs_last_ms": [round(r.last * 1000, 1) for r in runs],
        "goal_p95_ms": GOAL_P95_MS,
    }
    results["met"] = results["job_complete_to_last_pod_released"]["p95_ms"] <= GOAL_P95_MS
    return cluster.publish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
