"""The rollout gate end to end: the example chart rendered by the built `helm template`,
the real Deployment and ReplicaSet controllers, the operator, the runner and PostgreSQL.

One namespace and one operator process serve the whole module (each test uses
its own release, so its own Deployment, DatabaseMigration and database). A
watch recorder (gatewatch.py) keeps every pod event, so invariants such as
"v1 keeps its Ready replicas" are checked over the whole rollout, not at a few
polled instants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chartrelease
import gatewatch
import operatorkit
import pgserver
import pytest
import samples
from kubeharness.wait import eventually
from migrategate.api import constants as c

STYLE = "seed004_ini_url"
VERSIONS = ("v1", "v2", "v2-broken", "v3")
OTHER_GATE = "example.com/other"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gate_images(node_images) -> dict[str, str]:
    """The migrategate image ("runner") and the sample app's image for each version."""
    images = {version: node_images.app(STYLE, version) for version in VERSIONS}
    return {"runner": node_images.runner(), **images}


@pytest.fixture
def ctx(control_plane, module_namespace, shipped_operator, pg, gate_images, tmp_path) -> Ctx:
    return Ctx(control_plane, module_namespace, pg, tmp_path, gate_images, shipped_operator)


# ----------------------------------------------------------------------------- helpers


class Ctx(chartrelease.Stage):
    def __init__(
        self,
        cp: Any,
        namespace: str,
        pg: pgserver.PgServer,
        tmp: Path,
        images: dict[str, str],
        operator: Any,
    ) -> None:
        super().__init__(cp, namespace, pg, tmp, images)
        self.operator = operator

    def app(self, release: str, replicas: int, values: dict | None = None, **migration: Any) -> App:
        return App(self, release, self.database(release), replicas, migration, values or {})

    def gated_pods_metric(self) -> float:
        for line in self.operator.metrics().splitlines():
            if line.startswith("migrategate_gated_pods "):
                return float(line.split()[1])
        raise AssertionError("no migrategate_gated_pods metric")


@dataclass
class App(chartrelease.Release):
    """A release whose pods sleep, at a sample version of VERSIONS."""

    replicas: int = 1
    migration: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # more chart values

    def image(self, version: str) -> str:
        return self.stage.images[version]

    def chart_values(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "command": ["sleep", "infinity"],
            "migration": self.migration,
            **self.values,
        }

    def apply(self, version: str) -> None:
        """The DatabaseMigration and the Deployment at `version`, in one apply."""
        self.install(self.image(version), self.chart_values(), version)

    def wait_rolled_out(self, version: str, timeout: float = 180) -> None:
        """Every replica runs `version`, Ready, and no other pod is left."""

        def check() -> None:
            dep = self.stage.get("deployment", self.name)
            st = dep.get("status") or {}
            assert st.get("observedGeneration") == dep["metadata"]["generation"], st
            for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
                assert st.get(key) == self.replicas, (key, st)
            pods = self.live_pods()
            assert len(pods) == self.replicas, [p["metadata"]["name"] for p in pods]
            for pod in pods:
                assert gatewatch.image_of(pod) == self.image(version), pod["spec"]
                assert gatewatch.ready(pod) and not gatewatch.gated(pod), pod["metadata"]["name"]

        eventually(check, timeout=timeout, interval=0.5)

    def wait_phase(self, phase: str, image: str | None = None, timeout: float = 120) -> dict:
        def check() -> dict[str, Any]:
            st = self.status()
            assert st.get("phase") == phase, st
            assert image is None or st.get("image") == image, st
            return st

        return eventually(check, timeout=timeout, interval=0.2)


def pod_history(rec: gatewatch.Recorder, release: str) -> list[tuple[float, list[dict]]]:
    """The release's live pods after each pod event, in the order the API sent them."""
    out = []
    for event, live in rec.states("Pod"):
        mine = [
            p
            for p in live.values()
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == release
        ]
        out.append((event.at, mine))
    return out


def ready_count(pods: list[dict], image: str) -> int:
    return sum(1 for p in pods if gatewatch.image_of(p) == image and gatewatch.ready(p))


def assert_old_replicas_kept(
    history: list[tuple[float, list[dict]]], old: str, new: str, n: int
) -> None:
    """`old` keeps n Ready pods until a `new` one is Ready, and n are Ready at every moment."""
    assert history
    for at, pods in history:
        if ready_count(pods, new) == 0:
            assert ready_count(pods, old) == n, (
                at,
                [(p["metadata"]["name"], gatewatch.image_of(p)) for p in pods],
            )
        assert ready_count(pods, old) + ready_count(pods, new) >= n, at


def pods_of(
    history: list[tuple[float, list[dict]]], image: str, until: float | None = None
) -> dict[str, list[dict]]:
    """Every recorded state of each pod running `image` (before `until`, if given)."""
    seen: dict[str, list[dict]] = {}
    for at, pods in history:
        if until is not None and at >= until:
            break
        for p in pods:
            if gatewatch.image_of(p) == image:
                seen.setdefault(p["metadata"]["name"], []).append(p)
    return seen


def assert_held(pod: dict[str, Any]) -> None:
    """Gated: Pending, not bound to a node, the scheduler condition says SchedulingGated."""
    assert gatewatch.gated(pod), pod["spec"].get("schedulingGates")
    assert not pod["spec"].get("nodeName"), pod["spec"].get("nodeName")
    assert (pod.get("status") or {}).get("phase") in (None, "Pending"), pod.get("status")


# ----------------------------------------------------------------------------- tests


def test_update_holds_new_pods_until_their_migration_succeeds(ctx):
    app = ctx.app("upd", replicas=3)
    app.apply("v1")
    app.wait_rolled_out("v1")
    v1, v2 = app.image("v1"), app.image("v2")
    with ctx.recorder() as rec:
        # Revision 0004 of v2 waits for this advisory lock: the migration runs while we hold it.
        with ctx.pg.admin_connection(app.db) as blocker:
            blocker.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
            app.apply("v2")
            app.wait_phase("Running", image=v2)

            def v2_pods_held_by_the_operator() -> None:
                pods = [p for p in app.pods() if gatewatch.image_of(p) == v2]
                assert pods, "no v2 pod yet"
                for pod in pods:
                    assert_held(pod)
                    sched = {x["type"]: x for x in pod["status"].get("conditions") or []}
                    assert sched["PodScheduled"]["reason"] == "SchedulingGated", sched
                assert ctx.gated_pods_metric() >= 1  # the operator saw them and holds them

            eventually(v2_pods_held_by_the_operator, timeout=60)
            unlocked_at = time.monotonic()
            blocker.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
        st = app.wait_condition("Ready")
        assert st["migratedImage"] == v2 and st["currentRevision"] == [samples.head_of("v2")]
        app.wait_rolled_out("v2")
        history = pod_history(rec, "upd")
    # While the migration could not finish, every v2 pod was held.
    held = pods_of(history, v2, until=unlocked_at)
    assert held, "no v2 pod was seen while the migration ran"
    for states in held.values():
        for pod in states:
            assert_held(pod)
    assert_old_replicas_kept(history, v1, v2, 3)
    assert app.heads() == [samples.head_of("v2")]
    assert len(app.job_names()) == 2
    eventually(lambda: _assert_equal(ctx.gated_pods_metric(), 0.0), timeout=10)
    assert "migrategate_gate_wait_seconds_count" in ctx.operator.metrics()


def _assert_equal(a: Any, b: Any) -> None:
    assert a == b, (a, b)


def test_failed_migration_keeps_new_pods_gated_until_a_fix(ctx):
    app = ctx.app("fail", replicas=2)
    app.apply("v1")
    app.wait_rolled_out("v1")
    v1, broken, v3 = app.image("v1"), app.image("v2-broken"), app.image("v3")
    with ctx.recorder() as rec:
        app.apply("v2-broken")
        st = app.wait_condition("Stalled")
        assert st["phase"] == "Failed" and st["migratedImage"] == v1
        eventually(lambda: _assert_some_held(app, broken), timeout=60)
        # The failed image's pods stay gated and v1 keeps serving; sampled for a few seconds.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _assert_some_held(app, broken)
            assert ready_count(app.pods(), v1) == 2
            time.sleep(0.5)
        # A v1 pod lost now is replaced by a gated v1 pod, which is released: v1 is migrated.
        stalled_at = time.monotonic()
        lost = next(p for p in app.pods() if gatewatch.image_of(p) == v1)["metadata"]["name"]
        ctx.kubectl("delete", "pod", lost, "--wait=false")
        eventually(lambda: _assert_v1_replaced(app, v1, lost), timeout=60)
        _assert_some_held(app, broken)
        app.apply("v3")
        st = app.wait_condition("Ready")
        assert st["migratedImage"] == v3
        app.wait_rolled_out("v3")
        history = pod_history(rec, "fail")
    broken_pods = pods_of(history, broken)
    assert broken_pods
    for states in broken_pods.values():  # never released, for their whole life
        for pod in states:
            assert_held(pod)
    before_loss = [(at, pods) for at, pods in history if at < stalled_at]
    assert_old_replicas_kept(before_loss, v1, broken, 2)
    replacement = [n for n in pods_of(history, v1) if n not in pods_of(before_loss, v1)]
    assert len(replacement) == 1  # born gated, released while the v2-broken pods were held
    assert gatewatch.gated(pods_of(history, v1)[replacement[0]][0])
    assert pods_of(history, v3, until=stalled_at) == {}
    assert app.heads() == [samples.head_of("v3")]
    operatorkit.assert_no_password(json.dumps(st) + ctx.operator.log())


def _assert_v1_replaced(app: App, v1: str, lost: str) -> None:
    ready = [
        p["metadata"]["name"]
        for p in app.pods()
        if gatewatch.image_of(p) == v1 and gatewatch.ready(p)
    ]
    assert len(ready) == 2 and lost not in ready, ready


def _assert_some_held(app: App, image: str) -> None:
    pods = [p for p in app.pods() if gatewatch.image_of(p) == image]
    assert pods, f"no {image} pod"
    for pod in pods:
        assert_held(pod)


def test_rollback_to_v1_succeeds_with_a_warning_and_releases_v1_pods(ctx):
    # The default historyLimit keeps v1's finished Job: going back must run v1 again, not
    # adopt that Job's old result (the database has moved on to v2 since).
    app = ctx.app("rb", replicas=2)
    app.apply("v1")
    app.wait_rolled_out("v1")
    app.apply("v2")
    app.wait_rolled_out("v2")
    assert app.heads() == [samples.head_of("v2")]
    app.apply("v1")
    st = app.wait_condition("Ready")
    assert st["migratedImage"] == app.image("v1") and st["observedGeneration"] == 3
    assert st.get("warnings"), st  # the database is ahead of the v1 image
    assert any(samples.head_of("v2") in w for w in st["warnings"]), st["warnings"]
    assert st["currentRevision"] == [samples.head_of("v2")]
    app.wait_rolled_out("v1")
    assert app.heads() == [samples.head_of("v2")]  # nothing was downgraded


def test_scale_up_releases_new_pods_without_a_new_job(ctx):
    app = ctx.app("scale", replicas=1)
    app.apply("v1")
    app.wait_rolled_out("v1")
    jobs = app.job_names()
    generation = ctx.get("dbm", app.name)["metadata"]["generation"]
    with ctx.recorder() as rec:
        ctx.kubectl("scale", f"deployment/{app.name}", "--replicas=4")
        app.replicas = 4
        app.wait_rolled_out("v1", timeout=60)
        history = pod_history(rec, "scale")
    new_pods = pods_of(history, app.image("v1"))
    created_gated = [n for n, states in new_pods.items() if gatewatch.gated(states[0])]
    assert len(created_gated) == 3, new_pods.keys()  # born gated, released by the operator
    assert app.job_names() == jobs
    assert ctx.get("dbm", app.name)["metadata"]["generation"] == generation


def test_operator_restart_while_pods_are_gated(ctx):
    app = ctx.app("rst", replicas=2)
    app.apply("v1")
    app.wait_rolled_out("v1")
    v2 = app.image("v2")
    try:
        with ctx.pg.admin_connection(app.db) as blocker:
            blocker.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
            app.apply("v2")
            app.wait_phase("Running", image=v2)
            eventually(lambda: _assert_some_held(app, v2), timeout=60)
            ctx.operator.kill()  # no clean-up; the migration finishes while it is down
            blocker.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
        eventually(lambda: _assert_job_complete(ctx, app), timeout=60)
        _assert_some_held(app, v2)  # nobody else lifts the gate
    finally:
        ctx.operator.start()  # also for the tests after this one
    st = app.wait_condition("Ready")
    assert st["migratedImage"] == v2 and st["attempts"] == 1
    app.wait_rolled_out("v2")
    assert len(app.job_names()) == 2


def _assert_job_complete(ctx: Ctx, app: App) -> None:
    jobs = ctx.get("jobs", "-l", f"{c.LABEL_MIGRATION}={app.name}")["items"]
    assert any(gatewatch.job_complete(j) and app.image("v2") in json.dumps(j["spec"]) for j in jobs)


def test_missing_migration_warns_then_a_new_one_releases_keeping_other_gates(ctx):
    image = ctx.images["v1"]
    ctx.apply(operatorkit.gated_pod("orphan", image, "late", OTHER_GATE))

    def warned() -> None:
        out = ctx.kubectl(
            "get", "events", "--field-selector", "involvedObject.name=orphan", "-o", "json"
        )
        reasons = {(e["type"], e["reason"]) for e in json.loads(out)["items"]}
        assert ("Warning", "MigrationNotFound") in reasons, reasons

    eventually(warned, timeout=30)
    assert_held(ctx.get("pod", "orphan"))
    # The DatabaseMigration it names appears and migrates its image: our gate goes, the other stays.
    ctx.database("late")
    ctx.migration("late", image, "late-db")

    def only_other_gate_left() -> None:
        gates = ctx.get("pod", "orphan")["spec"].get("schedulingGates")
        assert gates == [{"name": OTHER_GATE}], gates

    eventually(only_other_gate_left, timeout=120)
    assert not ctx.get("pod", "orphan")["spec"].get("nodeName")
    ctx.kubectl("delete", "pod", "orphan", "--wait=false")


def test_init_container_mode_waits_for_the_schema_without_the_operator(ctx):
    """gate.mode=initContainer, no DatabaseMigration: `migrategate wait` holds each pod in its
    init container until something else migrates the database."""
    values = {
        "gate": {"mode": "initContainer", "runnerImage": ctx.images["runner"]},
        "migration": {"enabled": False},
    }
    app = ctx.app("init", replicas=2, values=values)
    manifest = app.render(app.image("v1"), app.chart_values(), "v1")
    assert "kind: DatabaseMigration" not in manifest and c.SCHEDULING_GATE not in manifest
    ctx.kubectl("apply", "-f", "-", input=manifest)

    def waiting_in_init() -> list[dict]:
        pods = app.pods()
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        for pod in pods:
            st = pod.get("status") or {}
            inits = {x["name"]: x.get("state") or {} for x in st.get("initContainerStatuses") or []}
            assert "terminated" in inits.get("install-runner", {}), inits
            assert "running" in inits.get("wait-for-schema", {}), inits
            assert not gatewatch.ready(pod)
        return pods

    eventually(waiting_in_init, timeout=60)
    # Still waiting a few seconds later: the schema is not there.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        waiting_in_init()
        time.sleep(0.5)
    # Migrate from outside the cluster (a CI step, say): the pods start.
    migrate = [sys.executable, "-m", "migrategate.runner", "migrate", "--config", "alembic.ini"]
    project = samples.materialize(STYLE, "v1", ctx.tmp / "project")
    env = {**os.environ, "DATABASE_URL": ctx.pg.local_url(app.db)}
    done = subprocess.run(migrate, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    app.wait_rolled_out("v1", timeout=60)
    assert app.heads() == [samples.head_of("v1")]
