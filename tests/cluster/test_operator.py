"""The operator end to end: real API server, Job controller, scheduler, kubelet and
containerd, the runner in real images, and PostgreSQL.

Each test gets a namespace and an operator process scoped to it. Application images
are sample Alembic projects (tests/samples) built into real images (kubeharness.imagebuild).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import operatorproc
import pgserver
import pytest
import samples
from kubeharness.wait import eventually
from migrationkit import REPO
from operatorkit import Cluster, assert_no_password, assert_phase, db_heads

SEEDS = sorted(samples.STYLES)


# ----------------------------------------------------------------------------- tests


def test_crd_explains_its_fields(control_plane, crd):
    def explain(path: str) -> str:
        # The API server publishes a new CRD's OpenAPI a moment after it is established.
        done = control_plane.kubectl("explain", path, check=False)
        assert done, f"kubectl explain {path}: nothing yet"
        return done

    out = eventually(lambda: explain("dbm.spec.runner.mode"), timeout=60)
    assert "inject: an init container copies the runner" in out
    out = control_plane.kubectl("explain", "dbm.status.migratedImage")
    assert "The last image whose migration succeeded" in out


def test_every_seed_sample_reaches_ready(cluster, operator, app_image, pg):
    dbs = {}
    for style in SEEDS:
        name = style.replace("_", "-")
        dbs[name] = pg.create_database()
        cluster.secret(f"{name}-db", pg.url(dbs[name]))
        cluster.migration(name, app_image(style, "v1"), f"{name}-db")
    head = samples.head_of("v1")
    for name, db in dbs.items():
        st = cluster.wait_ready(name)
        assert st["phase"] == "Succeeded"
        assert st["currentRevision"] == [head] and st["targetRevision"] == [head]
        assert st["appliedRevisions"][-1] == head and len(st["appliedRevisions"]) == 3
        assert st["migratedImage"] == st["image"]
        assert st["observedGeneration"] == 1
        assert db_heads(pg, db) == [head]
        # One attempt each, unless a fresh pod could not reach the database at first: seen
        # twice on this machine's pod network (a connect timeout, then the retry succeeds).
        assert len(cluster.jobs(name)) == st["attempts"]
        if st["attempts"] > 1:
            selector = f"reason=Retrying,involvedObject.name={name}"
            retries = cluster.get("events", "--field-selector", selector)["items"]
            assert retries and all("cannot reach the database" in e["message"] for e in retries)
    table = cluster.kubectl("get", "dbm")
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "IMAGE", "REVISION", "AGE"], table
    assert table.count("Succeeded") == len(SEEDS) and head in table
    assert_no_password(operator.log())
    assert 'migrategate_migrations_total{outcome="succeeded"} 5.0' in operator.metrics()


def test_new_image_gives_a_new_job_and_applied_revisions(cluster, operator, app_image, pg):
    db = pg.create_database(owner=pgserver.SPECIAL_USER)
    cluster.secret("db", pg.url(db, user=pgserver.SPECIAL_USER, password=pgserver.SPECIAL_PASSWORD))
    style = "seed004_ini_url"
    cluster.migration("shop", app_image(style, "v1"), "db", historyLimit=1)
    first = cluster.wait_ready("shop")
    v2 = app_image(style, "v2")
    cluster.kubectl(
        "patch", "dbm", "shop", "--type=merge", "-p", json.dumps({"spec": {"image": v2}})
    )

    def migrated() -> dict[str, Any]:
        st = cluster.status("shop")
        assert st.get("observedGeneration") == 2 and st.get("phase") == "Succeeded", st
        return st

    st = eventually(migrated, timeout=120)
    assert st["jobName"] != first["jobName"]
    assert st["appliedRevisions"] == [samples.head_of("v2")]
    assert st["currentRevision"] == [samples.head_of("v2")]
    assert st["migratedImage"] == v2
    assert st["jobName"] != first["jobName"]

    def history_kept() -> None:  # historyLimit 1: the first Job goes, the current one stays
        assert [j["metadata"]["name"] for j in cluster.jobs("shop")] == [st["jobName"]]

    eventually(history_kept, timeout=30)


def test_failing_revision_stalls_without_leaking_or_looping(cluster, operator, app_image, pg):
    db = cluster.new_database(pg)
    style = "seed000_env_sync_url"
    cluster.migration("shop", app_image(style, "v1"), "db")
    cluster.wait_ready("shop")
    cluster.migration("shop", app_image(style, "v2-broken"), "db")
    st = cluster.wait_condition("shop", "Stalled")
    assert st["phase"] == "Failed"
    assert "MigrationFailed" in st["message"]
    assert_no_password(json.dumps(st))
    assert db_heads(pg, db) == [samples.head_of("v1")]
    jobs = {j["metadata"]["name"] for j in cluster.jobs("shop")}
    # Over 30 s, no new Job appears and the status stays put.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert {j["metadata"]["name"] for j in cluster.jobs("shop")} == jobs
        assert cluster.status("shop")["phase"] == "Failed"
        time.sleep(2)
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=shop")
    assert "MigrationFailed" in events
    assert_no_password(events + operator.log())
    # The fix (a new image) starts again and succeeds.
    cluster.migration("shop", app_image(style, "v3"), "db")
    eventually(lambda: assert_phase(cluster, "shop", "Succeeded", generation=3), timeout=120)
    assert db_heads(pg, db) == [samples.head_of("v3")]


def test_missing_secret_stalls_naming_it(cluster, operator, app_image, pg):
    cluster.migration("shop", app_image("seed004_ini_url", "v1"), "no-such-secret")
    st = cluster.wait_condition("shop", "Stalled", timeout=60)
    assert st["phase"] == "Failed"
    assert "no-such-secret" in st["message"]
    assert "CreateContainerConfigError" in st["message"]
    # The stuck Job is removed, so creating the Secret later runs nothing unannounced.
    eventually(lambda: _assert_no_active_jobs(cluster, "shop"), timeout=30)
    # Once the Secret exists, the rerun annotation starts again.
    db = pg.create_database()
    cluster.secret("no-such-secret", pg.url(db))
    cluster.kubectl("annotate", "dbm", "shop", "migrategate.io/rerun=1")
    st = cluster.wait_ready("shop")
    assert st["attempts"] == 1 and st["currentRevision"] == [samples.head_of("v1")]
    assert db_heads(pg, db) == [samples.head_of("v1")]


def test_image_that_cannot_be_pulled_stalls_after_the_grace(
    cluster, control_plane, namespace, crd, runner_image, pg, tmp_path
):
    cluster.new_database(pg)
    grace = {"MIGRATEGATE_IMAGE_PULL_GRACE": "30"}
    log = tmp_path / "operator.log"
    env = control_plane.env
    with operatorproc.running(env, namespace, log, runner_image=runner_image, extra_env=grace):
        # A registry on loopback that is not there: the pull fails without leaving the machine.
        cluster.migration("shop", "127.0.0.1:9/no-such-app:1", "db")

        def pulling() -> dict[str, Any]:
            st = cluster.status("shop")
            assert st.get("phase") == "Running" and "ErrImagePull" in st.get("message", ""), st
            return st

        eventually(pulling, timeout=60)  # a pull error is not final at first sight
        st = cluster.wait_condition("shop", "Stalled", timeout=60)
        assert st["phase"] == "Failed"
        assert "ErrImagePull" in st["message"] or "ImagePullBackOff" in st["message"]
        eventually(lambda: _assert_no_active_jobs(cluster, "shop"), timeout=30)


def _assert_no_active_jobs(cluster: Cluster, name: str) -> None:
    assert cluster.jobs(name) == []


def test_operator_killed_while_job_runs_adopts_it(
    cluster, control_plane, namespace, crd, runner_image, app_image, pg, tmp_path
):
    db = cluster.new_database(pg)
    style = "seed002_async_engine_wrap"
    # Revision 0004 of v2 waits for this advisory lock: the Job runs as long as the test holds it.
    with pg.admin_connection(db) as blocker:
        blocker.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
        log = tmp_path / "operator.log"
        op = operatorproc.Operator(control_plane.env, namespace, log, runner_image)
        op.start()
        try:
            cluster.migration("shop", app_image(style, "v2"), "db")
            eventually(lambda: assert_phase(cluster, "shop", "Running", 1), timeout=60)
            eventually(lambda: _assert_pod_running(cluster), timeout=60)
            op.kill()
            op = operatorproc.Operator(control_plane.env, namespace, log, runner_image)
            op.start()
        finally:
            blocker.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
    try:
        st = cluster.wait_ready("shop")
        assert st["attempts"] == 1
        assert len(cluster.jobs("shop")) == 1
        assert db_heads(pg, db) == [samples.head_of("v2")]
    finally:
        op.stop()
        print(op.log()[-20000:])


def _assert_pod_running(cluster: Cluster) -> None:
    pods = cluster.get("pods", "-l", "migrategate.io/migration=shop")["items"]
    assert pods and pods[0]["status"].get("phase") == "Running", pods


def test_transient_failure_is_retried_once_the_database_is_back(cluster, operator, app_image, pg):
    db = cluster.new_database(pg)
    pg.stop()
    try:
        cluster.migration(
            "shop",
            app_image("seed001_async_settings", "v1"),
            "db",
            retry={"limit": 5, "backoffSeconds": 3, "maxBackoffSeconds": 10},
        )

        def first_attempt_failed() -> dict[str, Any]:
            st = cluster.status("shop")
            assert st.get("phase") == "Pending" and st.get("nextAttemptAt"), st
            return st

        st = eventually(first_attempt_failed, timeout=90)
        # Usually the first attempt; on a loaded machine the poll may see a later one.
        assert st["attempts"] >= 1 and "Transient" in st["message"]
    finally:
        pg.start()
    st = cluster.wait_ready("shop")
    assert st["attempts"] >= 2
    assert db_heads(pg, db) == [samples.head_of("v1")]


@pytest.fixture
def operator_identity(control_plane, namespace, tmp_path) -> Iterator[Path]:
    """deploy/rbac.yaml applied; a kubeconfig holding a token of its ServiceAccount."""
    cp = control_plane
    rbac = str(REPO / "deploy/rbac.yaml")
    cp.kubectl("create", "namespace", "migrategate-system", check=False)
    cp.kubectl("apply", "-f", rbac)
    try:
        token = cp.kubectl(
            "create", "token", "migrategate-operator", "-n", "migrategate-system"
        ).strip()
        kubeconfig = tmp_path / "operator.kubeconfig"
        cluster = {"server": cp.server, "certificate-authority": str(cp.ca_file)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "op", "context": {"cluster": "local", "user": "operator"}}],
            "current-context": "op",
        }
        kubeconfig.write_text(json.dumps(config))
        yield kubeconfig
    finally:  # the chart's tests install their own copy of these cluster-wide objects
        cp.kubectl("delete", "-f", rbac, "--wait=false", check=False)
        cp.kubectl("delete", "namespace", "migrategate-system", "--wait=false", check=False)


def test_operator_without_secret_permissions_completes(
    cluster, control_plane, namespace, crd, runner_image, app_image, pg, tmp_path, operator_identity
):
    cp = control_plane
    sa = "system:serviceaccount:migrategate-system:migrategate-operator"
    for verb in ("get", "list", "watch"):
        out = cp.kubectl("auth", "can-i", verb, "secrets", "-n", namespace, "--as", sa, check=False)
        assert out.strip() == "no"
    cluster.new_database(pg)
    env = {**cp.env, "KUBECONFIG": str(operator_identity)}
    log = tmp_path / "operator.log"
    with operatorproc.running(env, namespace, log, runner_image=runner_image) as op:
        cluster.migration("shop", app_image("seed003_settings_sync_property", "v1"), "db")
        st = cluster.wait_ready("shop")
        assert st["currentRevision"] == [samples.head_of("v1")]
        assert "Forbidden" not in op.log() and "forbidden" not in op.log()
