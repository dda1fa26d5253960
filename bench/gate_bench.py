"""Rollout-gate latency on the local control plane: Job Complete -> last gated pod released.

    .venv/bin/python -m bench gate -- [--runs 10] [--replicas 10] [--json out.json]

Per run: a fresh database, a DatabaseMigration (sample v2, whose revision 0004
waits on an advisory lock the bench holds) and a Deployment of `--replicas`
gated pods, applied together. Once every pod exists, gated, and the Job runs,
the bench unlocks. From the bench's own watch events (tests/cluster/gatewatch.py)
it takes the arrival of the Job's Complete=True and of each pod's first event
without the gate. Reported: per run, Job Complete -> last pod released (the goal:
p95 <= 500 ms), and per pod, Job Complete -> that pod released. The first
`--warmup` runs are not counted: a fresh API server's first strategic-merge patch
of a pod and the operator's first TLS connections cost some 300 ms once. The
watches run in a child process: the pod runner shares this process's GIL and
would delay their arrival times while it starts the released pods.

It starts its own control plane, pod runner, PostgreSQL and operator process,
the same pieces as tests/cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "tests", REPO / "tests" / "cluster"):
    sys.path.insert(0, str(extra))

import gatewatch  # noqa: E402
import localstack  # noqa: E402
import migrationkit  # noqa: E402
import pgserver  # noqa: E402
import samples  # noqa: E402
from kubeharness.wait import eventually  # noqa: E402
from migrategate.api import constants as c  # noqa: E402

from bench.stats import summary  # noqa: E402

NAMESPACE = "gate-bench"
APP_IMAGE = "gate-bench-app:v2"
GOAL_P95_MS = 500


def manifests(name: str, replicas: int) -> list[dict[str, Any]]:
    """A DatabaseMigration and a Deployment whose pods wait for it, as the example chart does."""
    labels = {"app.kubernetes.io/name": name}
    migration = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name},
        "spec": {
            "image": APP_IMAGE,
            "databaseURL": {"secretKeyRef": {"name": name, "key": "url"}},
        },
    }
    pod_spec = {
        "schedulingGates": [{"name": c.SCHEDULING_GATE}],
        "containers": [{"name": "app", "image": APP_IMAGE, "command": ["sleep", "infinity"]}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {c.ANNOTATION_MIGRATION: name}},
                "spec": pod_spec,
            },
        },
    }
    return [migration, deployment]


@dataclass
class Run:
    last: float  # Job Complete -> last pod released
    pods: list[float]  # Job Complete -> each pod released
    status: float  # Job Complete -> the DatabaseMigration's event with the new migratedImage


def one_run(cp: Any, pg: pgserver.PgServer, i: int, replicas: int) -> Run:
    name = f"bench-{i:03d}"
    db = pg.create_database()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    secret["stringData"] = {"url": pg.url(db)}
    kubectl = lambda *a, **kw: cp.kubectl(*a, "-n", NAMESPACE, **kw)  # noqa: E731
    kubectl("apply", "-f", "-", input=json.dumps(secret))
    rec = gatewatch.ProcessRecorder(cp.server, cp.workdir / "pki", NAMESPACE).start()
    try:
        with pg.admin_connection(db) as blocker:
            blocker.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
            items = {"apiVersion": "v1", "kind": "List", "items": manifests(name, replicas)}
            kubectl("apply", "-f", "-", input=json.dumps(items))
            eventually(lambda: _all_gated_and_job_running(rec, name, replicas), timeout=120)
            blocker.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
        try:
            released = eventually(lambda: _released(rec, name, replicas), timeout=120)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{kubectl('get', 'dbm', name, '-o', 'yaml')}") from e
        complete = _job_complete_at(rec, name)
        migrated = _migrated_at(rec, name)
    finally:
        rec.stop()
    kubectl("delete", "deployment", name, "--wait=false")
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


def _migrated_at(rec: gatewatch.Recorder, name: str) -> float:
    for e in rec.events("DatabaseMigration"):
        if e.name == name and (e.obj.get("status") or {}).get("migratedImage") == APP_IMAGE:
            return e.at
    raise AssertionError(f"no event with {name}'s migratedImage")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted first runs (cold API server paths, TLS)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mg-gate-bench-") as tmp:
        work = Path(tmp)
        apps = {APP_IMAGE: migrationkit.app_image("seed004_ini_url", "v2", work / "app")}
        with localstack.running(work, NAMESPACE, apps) as stack:
            total = args.warmup + args.runs
            runs = [one_run(stack.cp, stack.pg, i, args.replicas) for i in range(total)]
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
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
