"""The migration Job's pod on the real node.

Each test gets a namespace under the restricted Pod Security profile, an operator process
scoped to it, and real application images (kubeharness.imagebuild): the pod's security
defaults against every kind of image, its writable /tmp and HOME, the kubelet's own words
for a missing Secret key, a pod deleted or evicted mid-migration, an image that appears
while the kubelet backs off pulling it, and an operator whose RBAC lacks a list.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from typing import Any

import gatewatch
import operatorproc
import pgserver
import pytest
import samples
from kubeharness import imagebuild
from kubeharness.controlplane import ControlPlane
from kubeharness.wait import eventually
from migrategate.api import constants as c
from migrationkit import operator_identity
from operatorkit import Cluster, assert_no_password, db_heads

STYLE = "seed004_ini_url"  # engine_from_config(sqlalchemy.url): runs on every flavour's driver
HEAD = samples.head_of("v1")


def dry_run_warnings(cp: ControlPlane, namespace: str, manifest: dict[str, Any]) -> str:
    """What `kubectl create --dry-run=server` of ``manifest`` prints on stderr (its warnings);
    the API server runs every admission check, Pod Security included, and stores nothing."""
    done = subprocess.run(
        [str(cp.bin_dir / "kubectl"), "create", "--dry-run=server", "-n", namespace, "-f", "-"],
        env=cp.env,
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def as_new_job(job: dict[str, Any], name: str) -> dict[str, Any]:
    """The operator's Job as a manifest to create again: its spec, under another name."""
    spec = json.loads(json.dumps(job["spec"]))
    spec.pop("selector", None)  # the Job controller's, with the original's uid
    labels = spec["template"]["metadata"].get("labels") or {}
    spec["template"]["metadata"]["labels"] = {
        k: v for k, v in labels.items() if "controller-uid" not in k and "job-name" not in k
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def runner_result(pod: dict[str, Any]) -> dict[str, Any]:
    """The runner's JSON result: the migration container's termination message."""
    (main,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == c.CONTAINER_NAME]
    return dict(json.loads(main["state"]["terminated"]["message"]))


def wait_migrated(cluster: Cluster, name: str, timeout: float = 180) -> dict[str, Any]:
    """Ready, or fail as soon as the migration stalls (showing why)."""

    def settled() -> dict[str, Any]:
        st = cluster.status(name)
        done = {c["type"] for c in st.get("conditions") or [] if c["status"] == "True"}
        assert done & {"Ready", "Stalled"}, st
        return st

    st = eventually(settled, timeout=timeout, interval=0.5)
    assert st["phase"] == "Succeeded", (name, st.get("message"))
    return st


def events_of(cluster: Cluster, kind: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    return cluster.get("events", "--field-selector", selector)["items"]


# ----------------------------------------------------------------- pod security


# flavour -> files replacing the sample's (SQLAlchemy 1.4 lacks the samples' DeclarativeBase)
FLAVOURS: dict[str, dict[str, str] | None] = {
    "root": None,  # no USER, like FROM python:3.x-slim
    "named-user": None,  # USER app: a name runAsNonRoot cannot verify
    "asyncpg-only": None,  # no psycopg at all: Alembic runs through run_sync
    "sqla14": {samples.BASE_14_PATH: samples.BASE_14},  # SQLAlchemy 1.4 with psycopg2
}
DRIVER = {
    "root": "psycopg",
    "named-user": "psycopg",
    "asyncpg-only": "asyncpg",
    "sqla14": "psycopg2",
}


def test_every_app_flavour_migrates_under_restricted_pod_security(
    cluster, control_plane, namespace, operator, app_image, node_images, pg
):
    dbs = {}
    for flavour, files in FLAVOURS.items():
        dbs[flavour] = pg.create_database()
        cluster.secret(f"{flavour}-db", pg.url(dbs[flavour]))
        cluster.migration(flavour, app_image(STYLE, "v1", flavour, files=files), f"{flavour}-db")
    # The check below can see a violation: a Job without the profile's settings draws a warning.
    bare = {"name": "c", "image": node_images.busybox(), "command": ["true"]}
    bad = {"restartPolicy": "Never", "containers": [bare]}
    control = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"}}
    control["spec"] = {"template": {"spec": bad}}
    assert 'would violate PodSecurity "restricted' in dry_run_warnings(
        control_plane, namespace, control
    )
    for flavour, db in dbs.items():
        st = wait_migrated(cluster, flavour)
        assert st["attempts"] == 1 and st["currentRevision"] == [HEAD], (flavour, st)
        assert db_heads(pg, db) == [HEAD]
        (job,) = cluster.jobs(flavour)
        assert dry_run_warnings(control_plane, namespace, as_new_job(job, f"again-{flavour}")) == ""
        job_events = events_of(cluster, "Job", job["metadata"]["name"])
        assert not [e for e in job_events if e["reason"] == "FailedCreate"], job_events
        (pod,) = cluster.pods(flavour)
        spec = pod["spec"]
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for container in spec["initContainers"] + spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert {"name": c.TMP_VOLUME_NAME, "mountPath": "/tmp"} in container["volumeMounts"]
        tmp = {"name": c.TMP_VOLUME_NAME, "emptyDir": {"sizeLimit": "64Mi"}}
        assert tmp in spec["volumes"]
        assert runner_result(pod)["driver"] == DRIVER[flavour], flavour
    assert_no_password(operator.log())


# Imported by env.py (through app.db.base): writes a temporary file, a file under HOME, and
# checks that the image's own files are read-only, then says what it found.
WRITES_PROBE = """
import errno, os, pathlib, tempfile

with tempfile.NamedTemporaryFile(prefix="probe-") as _tmp:
    _tmp.write(b"scratch")
    _tmp.flush()
    _TMP = os.path.dirname(_tmp.name)
_cache = pathlib.Path.home() / ".cache" / "probe"
_cache.mkdir(parents=True, exist_ok=True)
(_cache / "ok").write_text("ok")
try:
    open("/app/written-by-env-py", "w")
except OSError as _error:
    if _error.errno != errno.EROFS:
        raise
else:
    raise RuntimeError("the image's root filesystem is writable")
print(f"probe: tmp={_TMP} home={pathlib.Path.home()} uid={os.getuid()} root=read-only")
"""


def test_the_runner_writes_tmp_and_home_under_a_read_only_root(cluster, operator, app_image, pg):
    cluster.new_database(pg)
    base = (samples.SAMPLES_DIR / STYLE / samples.BASE_14_PATH).read_text()
    files = {samples.BASE_14_PATH: base + WRITES_PROBE}
    # named-user: the image's HOME (/home/app) belongs to a user the pod does not run as.
    cluster.migration("shop", app_image(STYLE, "v1", "named-user", files=files), "db")
    st = wait_migrated(cluster, "shop")
    assert st["currentRevision"] == [HEAD]
    (pod,) = cluster.pods("shop")
    logs = cluster.kubectl("logs", pod["metadata"]["name"], "-c", c.CONTAINER_NAME)
    assert "probe: tmp=/tmp home=/tmp uid=65532 root=read-only" in logs, logs


# ----------------------------------------------------------------- configuration errors


def test_a_missing_secret_key_stalls_with_the_kubelets_words(cluster, operator, app_image, pg):
    db = pg.create_database()
    cluster.secret("db", pg.url(db), key="dsn")  # the migration asks for key "url"
    cluster.secret("good-db", pg.url(db))
    image = app_image(STYLE, "v1")
    cluster.migration("no-key", image, "db")
    # Its databaseURL is fine; a Secret of its job.env is missing.
    extra = {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "extras", "key": "token"}}}
    cluster.migration("no-extra", image, "good-db", job={"env": [extra]})
    st = cluster.wait_condition("no-key", "Stalled", timeout=60)
    assert st["phase"] == "Failed"
    assert f"couldn't find key url in Secret {cluster.ns}/db" in st["message"], st
    assert "databaseURL.secretKeyRef: Secret 'db', key 'url'" in st["message"], st
    st = cluster.wait_condition("no-extra", "Stalled", timeout=60)
    assert 'secret "extras" not found' in st["message"], st
    assert "databaseURL" not in st["message"] and "job.env" in st["message"], st
    for name in ("no-key", "no-extra"):  # the stuck Jobs are removed
        eventually(lambda name=name: _assert_no_jobs(cluster, name), timeout=30)
    assert db_heads_or_none(pg, db) is None


def _assert_no_jobs(cluster: Cluster, name: str) -> None:
    assert cluster.jobs(name) == []


def db_heads_or_none(pg: pgserver.PgServer, db: str) -> list[str] | None:
    exists = pg.execute("SELECT to_regclass('alembic_version') IS NOT NULL", db)[0][0]
    return db_heads(pg, db) if exists else None


# ----------------------------------------------------------------- disruptions

# Revision 0004 of v2 waits for this advisory lock while the test holds it.
SLOW_WAITERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    f" AND classid = 0 AND objid = {samples.SLOW_LOCK_KEY}"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def advisory_locks_of_others(pg: pgserver.PgServer, db: str, mine: int) -> list[tuple]:
    """Advisory locks held or awaited in ``db`` by any session but the test's own."""
    return pg.execute(
        "SELECT pid, objid, granted FROM pg_locks WHERE locktype = 'advisory' AND pid <> "
        f"{mine} AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        db,
    )


def evict(cluster: Cluster, pod: str) -> None:
    """The Eviction API for one pod (what `kubectl drain` calls for each pod of a node)."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": cluster.ns},
    }
    path = f"/api/v1/namespaces/{cluster.ns}/pods/{pod}/eviction"
    cluster.cp.kubectl("create", "--raw", path, "-f", "-", input=json.dumps(body))


def first_termination(rec: gatewatch.Recorder, pod: str) -> tuple[float, dict[str, Any]]:
    """When the recorder first saw the migration container of ``pod`` terminated, and how."""
    for event in rec.events("Pod"):
        if event.name != pod:
            continue
        for st in (event.obj.get("status") or {}).get("containerStatuses") or []:
            if st["name"] == c.CONTAINER_NAME and (st.get("state") or {}).get("terminated"):
                return event.at, st["state"]["terminated"]
    raise AssertionError(f"{pod}: no terminated migration container yet")


def conditions_seen(rec: gatewatch.Recorder, pod: str) -> set[str]:
    return {
        f"{cond['type']}/{cond.get('reason', '')}"
        for event in rec.events("Pod")
        if event.name == pod
        for cond in (event.obj.get("status") or {}).get("conditions") or []
    }


# What the Retrying status says: the pod is gone when its Job fails, so the Job's pod failure
# policy names the cause (or, had the operator seen the pod first, the pod does).
RETRY_REASONS = {
    "delete": r"(Terminated: Container migrate .* exit code 143|PodDeleted: stopped by SIGTERM)",
    "evict": r"DisruptionTarget: (Pod .* has condition DisruptionTarget|stopped by SIGTERM)",
}


@pytest.mark.parametrize(
    ("how", "style"),
    [
        # env.py runs asyncpg in its own asyncio.run: the SIGTERM lands inside that loop
        ("delete", "seed002_async_engine_wrap"),
        # engine_from_config with psycopg (3): the SIGTERM lands inside psycopg's wait
        ("evict", "seed004_ini_url"),
        # env.py's own psycopg2 engine: libpq waits in C, where no Python handler runs; the
        # runner's helper thread cancels the statement
        ("delete", "seed003_settings_sync_property"),
    ],
)
def test_a_pod_deleted_or_evicted_mid_migration_is_retried(
    how, style, cluster, control_plane, operator, app_image, pg
):
    db = cluster.new_database(pg)
    retry = {"limit": 3, "backoffSeconds": 5, "maxBackoffSeconds": 5}
    with (
        pg.admin_connection(db) as blocker,
        gatewatch.Recorder(control_plane.server, control_plane.workdir / "pki", cluster.ns) as rec,
    ):
        mine = blocker.execute("SELECT pg_backend_pid()").fetchone()[0]
        blocker.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
        try:
            cluster.migration("shop", app_image(style, "v2"), "db", retry=retry)
            eventually(lambda: _assert_waiting_in_0004(pg, db), timeout=90)
            (pod,) = [p["metadata"]["name"] for p in cluster.pods("shop")]
            asked = time.monotonic()
            if how == "delete":
                cluster.kubectl("delete", "pod", pod, "--wait=false")
            else:
                evict(cluster, pod)
            ended_at, ended = eventually(lambda: first_termination(rec, pod), timeout=60)
            took = ended_at - asked
            print(
                f"{how} {style}: exit {ended['exitCode']} ({ended.get('reason')}) after {took:.1f}s"
            )
            # The runner stopped on the SIGTERM, at once (not SIGKILLed after the 30 s grace
            # period), and says so in its result.
            assert ended["exitCode"] == 143, ended
            assert took < 10, ended
            assert json.loads(ended["message"])["errorClass"] == "Terminated", ended
            if how == "evict":
                assert "DisruptionTarget/EvictionByEvictionAPI" in conditions_seen(rec, pod)
            # PostgreSQL rolled the upgrade back (0001 to 0004 are one transaction) and the
            # runner's lock went with its sessions.
            eventually(lambda: _assert_no_locks_but(pg, db, mine), timeout=10)
            assert db_heads_or_none(pg, db) is None
            retrying = eventually(lambda: _retrying_event(cluster), timeout=60)
            print(f"{how} {style}: {retrying['message']}")
            assert re.search(RETRY_REASONS[how], retrying["message"]), retrying["message"]
            # The next attempt runs, and waits for the lock like the first.
            eventually(lambda: _assert_waiting_in_0004(pg, db), timeout=90)
            assert cluster.status("shop")["attempts"] == 2
        finally:
            blocker.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
    st = cluster.wait_ready("shop")
    assert st["attempts"] == 2 and st["currentRevision"] == ["0004"]
    assert db_heads(pg, db) == ["0004"]
    assert len(cluster.jobs("shop")) == 2


def _assert_waiting_in_0004(pg: pgserver.PgServer, db: str) -> None:
    assert pg.execute(SLOW_WAITERS, db)[0][0] == 1


def _assert_no_locks_but(pg: pgserver.PgServer, db: str, mine: int) -> None:
    assert advisory_locks_of_others(pg, db, mine) == []


def _retrying_event(cluster: Cluster) -> dict[str, Any]:
    found = [
        e for e in events_of(cluster, "DatabaseMigration", "shop") if e["reason"] == "Retrying"
    ]
    assert found, "no Retrying event yet"
    return found[0]


# ----------------------------------------------------------------- image pulls


@pytest.mark.own_node  # it imports the image into the node's containerd itself
def test_an_image_that_appears_within_the_pull_grace_is_migrated(
    cluster, control_plane, namespace, crd, runner_image, node_images, pg, tmp_path
):
    db = cluster.new_database(pg)
    built = imagebuild.app_image(STYLE, "v1")
    # Not on the node under this name: the kubelet tries https://localhost/v2/... (refused at
    # once, nothing leaves the machine) and backs off, as with a registry that is not ready.
    late = f"localhost/migrategate-late-{uuid.uuid4().hex[:8]}:v1"
    grace = {"MIGRATEGATE_IMAGE_PULL_GRACE": "60"}
    log = tmp_path / "operator.log"
    env = control_plane.env
    with operatorproc.running(env, namespace, log, runner_image=runner_image, extra_env=grace):
        cluster.migration("shop", late, "db", imagePullPolicy="IfNotPresent")
        st = eventually(lambda: _pull_failing(cluster), timeout=60)
        assert "the attempt fails at" in st["message"] and "127.0.0.1:443" in st["message"], st
        seen = time.monotonic()
        node_images.load(built, late)  # the registry has it now
        st = cluster.wait_ready("shop", timeout=90)
        print(f"Ready {time.monotonic() - seen:.1f}s after the image appeared")
    assert st["attempts"] == 1 and st["currentRevision"] == [HEAD]
    assert len(cluster.jobs("shop")) == 1
    assert db_heads(pg, db) == [HEAD]


def _pull_failing(cluster: Cluster) -> dict[str, Any]:
    st = cluster.status("shop")
    assert st.get("phase") == "Running", st
    assert re.search(r"ErrImagePull|ImagePullBackOff", st.get("message", "")), st
    return st


# ----------------------------------------------------------------- RBAC


def reconcile_errors(op: operatorproc.Operator) -> float:
    found = re.search(r'migrategate_reconciles_total\{result="error"\} (\S+)', op.metrics())
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("resource", ["jobs", "pods"])
def test_an_operator_that_cannot_list_its_children_never_acts_blind(
    resource, cluster, control_plane, namespace, crd, runner_image, app_image, pg, tmp_path
):
    cp = control_plane
    cluster.new_database(pg)
    image = app_image(STYLE, "v1")
    kubeconfig = tmp_path / "operator.kubeconfig"
    with operator_identity(cp, namespace, kubeconfig, without=(resource, "list")) as identity:
        env = {**cp.env, "KUBECONFIG": str(identity)}
        sa = f"system:serviceaccount:{namespace}:{namespace}-operator"
        can = cp.kubectl(
            "auth", "can-i", "list", resource, "-n", namespace, "--as", sa, check=False
        )
        assert can.strip() == "no"
        log = tmp_path / "operator.log"
        with operatorproc.running(env, namespace, log, runner_image=runner_image) as op:
            cluster.migration("shop", image, "db")
            started = time.monotonic()
            if resource == "jobs":
                # It cannot know whether a Job exists, so it creates none, and tries again
                # every 5 s.
                eventually(lambda: _assert_errors_at_least(op, 1), timeout=30)
                first = reconcile_errors(op)
                while time.monotonic() - started < 15:
                    assert cluster.jobs("shop") == []
                    assert cluster.status("shop") == {}
                    time.sleep(1)
                assert reconcile_errors(op) >= first + 2
                assert "403" in op.log() and "Forbidden" in op.log()
                return
            # kopf fills its index of pods (the gate's) before it runs any handler: nothing
            # happens at all. It retries the list for about 55 s, then gives up, and the
            # operator exits (its Deployment restarts it: CrashLoopBackOff).
            while op.proc.poll() is None and time.monotonic() - started < 120:
                assert cluster.jobs("shop") == []
                assert cluster.status("shop") == {}
                time.sleep(1)
            print(
                f"the operator exited {op.proc.returncode} after {time.monotonic() - started:.0f}s"
            )
            assert op.proc.returncode not in (None, 0)
            assert re.search(r'cannot list resource \\?"pods', op.log()), op.log()[-3000:]
            assert cluster.jobs("shop") == []


def _assert_errors_at_least(op: operatorproc.Operator, n: float) -> None:
    assert reconcile_errors(op) >= n
