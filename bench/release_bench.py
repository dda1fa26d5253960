"""A release side by side: `helm upgrade` -> every new pod Ready, migrategate against a hook Job.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench release -- [--runs 10] [--warmup 1]

One cluster with its real node and the chart-installed operator (bench/cluster.py),
one app image pair, one Deployment shape, three ways to release (issue 13, part 1):

- gate: charts/examples/app with ``gate.mode=schedulingGate``: a DatabaseMigration
  and pods held by the scheduling gate until the operator has migrated their image;
- init: charts/examples/app with ``gate.mode=initContainer``: the same migration,
  and pods that wait in ``migrategate wait`` (polling every 0.5 s);
- hook: bench/charts/hook-app, what users run today: a Helm pre-upgrade hook Job
  running ``alembic upgrade head`` (helm waits for it before it changes the
  Deployment), and an init container polling ``alembic current`` every 2 s.

The app is the ``seed001_async_settings`` sample (async env.py, DATABASE_URL),
installed at ``v1`` (head 0003) and upgraded to ``v3`` plus one more revision:
3 pending revisions (0004 add a column, 0005 a unique index, 0006 add a column).
The Deployment: 5 replicas, ``maxUnavailable: 0``, ``maxSurge: 25%``, no readiness
probe, a shell that exits on SIGTERM. Each run has its own release, database and
Secret: ``helm install`` at v1 and wait until it is rolled out, then the timed
``helm upgrade`` to the new image (no ``--wait``; helm does wait for the hook),
from just before helm starts to the watch event at which 5 pods of the new image
are Ready; then ``helm uninstall --wait``. Modes alternate (gate, init, hook,
gate, ...); the first ``--warmup`` rounds are not counted.

The time is split from the bench's own watch events (tests/cluster/gatewatch.py,
in a child process): for gate and init, helm -> migration Job created -> its
``migrate`` container running -> Job Complete; for gate, Job Complete -> the last
pod gated at that moment released -> all new pods Ready; for hook, helm -> hook
Job created -> its container running -> Job Complete -> the first new pod
created (after helm has seen the hook finish and updated the Deployment).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gatewatch
import localstack
import migrationkit
import samples
from kubeharness.wait import eventually
from migrategate.api import constants as c

from bench import cluster
from bench.stats import summary

NAMESPACE = "release-bench"
REPO = Path(__file__).resolve().parents[1]
CHARTS = {"gate": REPO / "charts/examples/app", "init": REPO / "charts/examples/app"}
CHARTS["hook"] = REPO / "bench/charts/hook-app"
MODES = ("gate", "init", "hook")
REPLICAS = 5
GOAL_RATIO = 0.6  # gate / hook, medians
GOAL_RELEASED_P95_MS = 300  # gate: Job Complete -> the last pod that waited released

STYLE = "seed001_async_settings"
OLD = ("v1", {})
REVISION_0006 = samples.revision_source(
    "0006",
    "0005",
    'op.add_column("items", sa.Column("note", sa.Text(), nullable=True))',
    downgrade='op.drop_column("items", "note")',
    doc="add items.note",
)
NEW = ("v3", {"alembic/versions/0006_add_note.py": REVISION_0006})
# The app: a shell that sleeps, and exits at once on SIGTERM (so old pods go quickly).
APP_COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]


def build_images() -> None:
    cluster.build_images((STYLE, *OLD), (STYLE, *NEW))


@dataclass
class Run:
    mode: str
    total: float  # helm upgrade started -> the last new pod Ready
    helm: float  # helm upgrade started -> helm returned
    phases: dict[str, float] = field(default_factory=dict)  # name -> seconds


def values(mode: str, release: str, image: str, runner_image: str) -> dict[str, Any]:
    repository, tag = image.rsplit(":", 1)
    out: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag},
        "replicas": REPLICAS,
        "command": APP_COMMAND,
        "databaseURL": {"secretName": f"{release}-db", "secretKey": "url"},
    }
    if mode != "hook":
        gate_mode = "schedulingGate" if mode == "gate" else "initContainer"
        out["gate"] = {"mode": gate_mode, "runnerImage": runner_image}
    return out


class Release:
    """One run's release in the bench namespace."""

    def __init__(self, stack: localstack.Stack, mode: str, name: str, work: Path) -> None:
        self.stack, self.mode, self.name, self.work = stack, mode, name, work
        self.fullname = f"{name}-app"  # both charts: <release>-<chart name>

    def helm(self, *args: str) -> str:
        return migrationkit.helm(self.stack.cp, *args, "-n", NAMESPACE)

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.stack.cp.kubectl(*args, "-n", NAMESPACE, **kw)

    def values_file(self, image: str) -> Path:
        runner = self.stack.images.runner()
        path = self.work / f"{self.name}-{image.rsplit('-', 1)[-1]}.json"
        path.write_text(json.dumps(values(self.mode, self.name, image, runner)))
        return path

    def install(self, image: str, db_url: str) -> None:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{self.name}-db"}}
        secret["stringData"] = {"url": db_url}
        self.kubectl("apply", "-f", "-", input=json.dumps(secret))
        chart = str(CHARTS[self.mode])
        self.helm("install", self.name, chart, "-f", str(self.values_file(image)))
        self.kubectl("rollout", "status", f"deployment/{self.fullname}", "--timeout=300s")
        if self.mode != "hook":
            eventually(self._migration_ready, timeout=120, interval=0.2)

    def _migration_ready(self) -> None:
        dbm = json.loads(self.kubectl("get", "dbm", self.fullname, "-o", "json"))
        conds = (dbm.get("status") or {}).get("conditions") or []
        assert any(x["type"] == "Ready" and x["status"] == "True" for x in conds), conds

    def upgrade(self, image: str) -> None:
        chart = str(CHARTS[self.mode])
        self.helm("upgrade", self.name, chart, "-f", str(self.values_file(image)), "--timeout=5m")

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--wait", "--timeout=180s")
        self.kubectl("delete", "secret", f"{self.name}-db", "--wait=false")


def one_run(stack: localstack.Stack, mode: str, k: int, images: dict[str, str], work: Path) -> Run:
    release = Release(stack, mode, f"{mode}{k:02d}", work)
    db = stack.pg.create_database()
    release.install(images["old"], stack.pg.url(db))
    rec = cluster.recorder(stack.cp, NAMESPACE)
    try:
        started = time.monotonic()
        release.upgrade(images["new"])
        helm_done = time.monotonic()
        all_ready = eventually(
            lambda: _all_ready(rec, release.name, images["new"]), timeout=300, interval=0.2
        )
        events = rec.events()
    finally:
        rec.stop()
    release.uninstall()
    stack.pg.drop_database(db)
    run = Run(mode, all_ready - started, helm_done - started)
    run.phases = _phases(mode, release, events, started, all_ready, images["new"])
    return run


# ------------------------------------------------------------------------- event facts


def _app_pod(pod: dict[str, Any], release: str) -> bool:
    labels = pod["metadata"].get("labels") or {}
    first = pod["spec"]["containers"][0]["name"]
    return labels.get("app.kubernetes.io/instance") == release and first == "app"


def _all_ready(rec: gatewatch.Recorder, release: str, image: str) -> float:
    """Arrival time of the first pod event after which REPLICAS new pods are Ready."""
    for event, live in rec.states("Pod"):
        pods = [p for p in live.values() if _app_pod(p, release)]
        ready = [p for p in pods if gatewatch.image_of(p) == image and gatewatch.ready(p)]
        if len(ready) >= REPLICAS and not event.initial:
            return event.at
    raise AssertionError(f"fewer than {REPLICAS} Ready pods of {image}")


def _container_started(pod: dict[str, Any], name: str) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s["name"] == name and {"running", "terminated"} & set(s["state"]) for s in statuses)


def _phases(
    mode: str,
    release: Release,
    events: list[gatewatch.Event],
    started: float,
    all_ready: float,
    image: str,
) -> dict[str, float]:
    """Seconds of each step, from the first watch event that shows it."""
    live = [e for e in events if not e.initial and e.at >= started]

    def first(kind: str, test: Any) -> float:
        return min(e.at for e in live if e.kind == kind and test(e.obj))

    if mode == "hook":
        job = f"{release.fullname}-migrate"
    else:
        job = next(
            e.name
            for e in live
            if e.kind == "Job"
            and (e.obj["metadata"].get("annotations") or {}).get(c.ANNOTATION_IMAGE) == image
        )
    container = "migrate"
    created = first("Job", lambda o: o["metadata"]["name"] == job)
    running = first(
        "Pod",
        lambda o: (
            (o["metadata"].get("labels") or {}).get("job-name") == job
            and _container_started(o, container)
        ),
    )
    complete = first("Job", lambda o: o["metadata"]["name"] == job and gatewatch.job_complete(o))
    new_pod = first("Pod", lambda o: _app_pod(o, release.name) and gatewatch.image_of(o) == image)
    out = {
        "helm_to_job_created": created - started,
        "job_created_to_migration_running": running - created,
        "migration_running_to_job_complete": complete - running,
    }
    if mode == "hook":
        out["job_complete_to_first_new_pod"] = new_pod - complete
        out["first_new_pod_to_all_ready"] = all_ready - new_pod
    elif mode == "gate":
        # The pods that waited for the migration: created gated before the Job completed.
        waited = {
            e.name
            for e in live
            if e.kind == "Pod"
            and e.at <= complete
            and _app_pod(e.obj, release.name)
            and gatewatch.image_of(e.obj) == image
            and gatewatch.gated(e.obj)
        }
        released = max(
            first("Pod", lambda o, n=n: o["metadata"]["name"] == n and not gatewatch.gated(o))
            for n in waited
        )
        out["job_complete_to_released"] = released - complete
        out["released_to_all_ready"] = all_ready - released
    else:
        out["job_complete_to_all_ready"] = all_ready - complete
    return out


# ------------------------------------------------------------------------------ report


def report(runs: list[Run]) -> dict[str, Any]:
    by_mode: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in runs if r.mode == mode]
        if not mine:
            continue
        phases = {name: summary([r.phases[name] for r in mine]) for name in mine[0].phases}
        by_mode[mode] = {
            "helm_upgrade_to_all_new_pods_ready": summary([r.total for r in mine]),
            "helm_upgrade_returned": summary([r.helm for r in mine]),
            "phases": phases,
            "runs_ms": [round(r.total * 1000) for r in mine],
        }
    out: dict[str, Any] = {"replicas": REPLICAS, "pending_revisions": 3, "modes": by_mode}
    if "gate" in by_mode and "hook" in by_mode:
        gate = by_mode["gate"]["helm_upgrade_to_all_new_pods_ready"]
        hook = by_mode["hook"]["helm_upgrade_to_all_new_pods_ready"]
        ratio = gate["p50_ms"] / hook["p50_ms"]
        out["gate_to_hook_p50"] = round(ratio, 3)
        out["gate_to_hook_p95"] = round(gate["p95_ms"] / hook["p95_ms"], 3)
        out["goal_gate_to_hook"] = GOAL_RATIO
        out["met"] = ratio <= GOAL_RATIO
    if "gate" in by_mode:
        released = by_mode["gate"]["phases"]["job_complete_to_released"]
        out["goal_job_complete_to_released_p95_ms"] = GOAL_RELEASED_P95_MS
        out["met_job_complete_to_released"] = released["p95_ms"] <= GOAL_RELEASED_P95_MS
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench release", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="counted runs of each mode")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted first rounds")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the results here")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES):
        parser.error(f"--modes: one or more of {', '.join(MODES)}")
    status = cluster.isolated("release", raw, build_images)
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        images = {"old": stack.images.app(STYLE, OLD[0], files=OLD[1])}
        images["new"] = stack.images.app(STYLE, NEW[0], files=NEW[1])
        work = stack.cp.workdir / "release-bench"
        work.mkdir()
        order = [m for _ in range(args.warmup + args.runs) for m in modes]
        runs = []
        for k, mode in enumerate(order):
            run = one_run(stack, mode, k, images, work)
            cluster.say(f"{mode} {k // len(modes)}: {run.total:.2f}s")
            runs.append(run)
    counted = runs[args.warmup * len(modes) :]
    results = report(counted)
    results["warmup_runs_ms"] = [round(r.total * 1000) for r in runs[: args.warmup * len(modes)]]
    return cluster.publish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
