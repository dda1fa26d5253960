"""Expand and contract on the real cluster (issue 12): the example chart's Deployment, the real
Deployment and ReplicaSet controllers, the operator with deploy/rbac.yaml's rights, the
runner and PostgreSQL.

The sample renames items.name to items.title (tests/samples ec-v1, ec-v2). Each app pod runs
serve.py, which reads and writes its own image's column in a loop and exits on the first
error, so a column dropped under a pod that still uses it shows as a restart. A watch
recorder (gatewatch.py) keeps every pod, Job and DatabaseMigration event, so "the contract
Job starts only after the last old pod is gone" is checked on the API's own event order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import chartrelease
import gatewatch
import pytest
import samples
from kubeharness.wait import eventually
from migrategate.api import constants as c

STYLE = "seed004_ini_url"
REPLICAS = 2

# The application: the column its image uses, read and written every 0.2 s (the trigger of
# the expand half copies each write to the other column). Any error ends
# the process (the container restarts, restartCount goes up): the test's canary.
SERVE = """
import asyncio, os, sys
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
COLUMN = {"ec-v1": "name", "ec-v2": "title"}[sys.argv[1]]
async def main():
    # A connection per round: no statement cached from before a migration can go stale.
    engine = create_async_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
    n = 0
    while True:
        n += 1
        async with engine.begin() as conn:
            value = f"{sys.argv[1]}-{os.getpid()}-{n}"
            # Row 1 is 0001's (an INSERT would collide with the rows 0001 gave explicit ids).
            await conn.execute(text(f"UPDATE items SET {COLUMN} = :v WHERE id = 1"), {"v": value})
            await conn.execute(text(f"SELECT {COLUMN} FROM items ORDER BY id DESC LIMIT 5"))
        if n == 1:
            print(f"app {sys.argv[1]} serving on items.{COLUMN}", flush=True)
        await asyncio.sleep(0.2)
asyncio.run(main())
"""

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ec_images(node_images) -> dict[str, str]:
    """The migrategate image and the sample app (with serve.py) at each version used here."""
    versions = ("ec-v1", "ec-v2", "ec-v2-contract-broken")
    apps = {v: node_images.app(STYLE, v, files={"serve.py": SERVE}) for v in versions}
    return {"runner": node_images.runner(), **apps}


@pytest.fixture
def ctx(control_plane, module_namespace, shipped_operator, pg, ec_images, tmp_path) -> Ctx:
    return Ctx(control_plane, module_namespace, pg, tmp_path, ec_images)


# ----------------------------------------------------------------------------- helpers


class Ctx(chartrelease.Stage):
    def app(self, release: str) -> App:
        return App(self, release, self.database(release))


@dataclass
class App(chartrelease.Release):
    """A release whose REPLICAS pods run serve.py."""

    def apply(self, image_key: str, version: str) -> None:
        values = {"replicas": REPLICAS, "command": ["python", "serve.py", version]}
        self.install(self.stage.images[image_key], values, image_key)

    def condition(self, kind: str) -> dict[str, Any]:
        conds = {x["type"]: x for x in self.status().get("conditions") or []}
        return dict(conds.get(kind) or {})

    def wait_ready(self, image_key: str, timeout: float = 240) -> dict[str, Any]:
        image = self.stage.images[image_key]

        def check() -> dict[str, Any]:
            st = self.status()
            ready = next((x for x in st.get("conditions") or [] if x["type"] == "Ready"), {})
            assert st.get("image") == image and ready.get("status") == "True", st
            return st

        return eventually(check, timeout=timeout, interval=0.3)

    def wait_rolled_out(self, image_key: str, replicas: int = REPLICAS) -> None:
        image = self.stage.images[image_key]

        def check() -> None:
            pods = self.live_pods()
            assert len(pods) == replicas, [p["metadata"]["name"] for p in pods]
            for pod in pods:
                assert gatewatch.image_of(pod) == image and gatewatch.ready(pod), pod["status"]

        eventually(check, timeout=180, interval=0.5)

    def columns(self) -> set[str]:
        rows = self.stage.pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'",
            self.db,
        )
        return {r[0] for r in rows}


def restarts(rec: gatewatch.Recorder, release: str) -> dict[str, int]:
    """The highest restartCount each of the release's pods ever reported."""
    out: dict[str, int] = {}
    for event in rec.events("Pod"):
        if chartrelease.release_of(event.obj) != release:
            continue
        for status in (event.obj.get("status") or {}).get("containerStatuses") or []:
            out[event.name] = max(out.get(event.name, 0), int(status.get("restartCount") or 0))
    return out


def last_gone(rec: gatewatch.Recorder, release: str, image: str) -> float:
    """When the watch reported the release's last pod of `image` deleted."""
    times = [
        e.at
        for e in rec.events("Pod")
        if e.type == "DELETED"
        and chartrelease.release_of(e.obj) == release
        and gatewatch.image_of(e.obj) == image
    ]
    assert times, f"no pod of {image} was deleted"
    return max(times)


def contract_job_added(rec: gatewatch.Recorder, migration: str) -> gatewatch.Event:
    """The ADDED event of the migration's one contract Job."""
    added = [
        e
        for e in rec.events("Job")
        if e.type == "ADDED"
        and e.obj["metadata"].get("labels", {}).get(c.LABEL_JOB_KIND) == c.JOB_KIND_CONTRACT
        and e.obj["metadata"].get("labels", {}).get(c.LABEL_MIGRATION) == migration
    ]
    assert len(added) == 1, [e.name for e in added]
    return added[0]


def contract_states(rec: gatewatch.Recorder, name: str) -> list[str]:
    """status.phases.contract.state of each DatabaseMigration event, repeats folded."""
    out: list[str] = []
    for event in rec.events("DatabaseMigration"):
        if event.name != name:
            continue
        state = ((event.obj.get("status") or {}).get("phases") or {}).get("contract", {})
        value = state.get("state", "-")
        if not out or out[-1] != value:
            out.append(value)
    return out


# ----------------------------------------------------------------------------- tests


def test_a_rename_contracts_only_after_the_last_old_pod_is_gone(ctx: Ctx) -> None:
    app = ctx.app("rename")
    app.apply("ec-v1", "ec-v1")
    first = app.wait_ready("ec-v1")
    # No contract branch: one Job, today's status, no phases.
    assert first["phase"] == "Succeeded" and "phases" not in first, first
    assert [j["metadata"]["name"] for j in app.jobs()] == [first["jobName"]]
    app.wait_rolled_out("ec-v1")

    with ctx.recorder() as rec:
        app.apply("ec-v2", "ec-v2")
        done = app.wait_ready("ec-v2")
        app.wait_rolled_out("ec-v2")

    expand_head, contract_head = samples.phase_heads_of("ec-v2")
    expand, contract = done["phases"]["expand"], done["phases"]["contract"]
    assert expand["state"] == "Succeeded" and expand["targetRevisions"] == [expand_head], done
    assert expand["appliedRevisions"] == [expand_head], done
    assert contract["state"] == "Succeeded", done
    assert contract["appliedRevisions"] == [contract_head], done
    assert done["contracted"]["image"] == ctx.images["ec-v2"], done
    assert done["contracted"]["revisions"] == ["0004c"], done
    assert done["migratedImage"] == ctx.images["ec-v2"]
    assert app.heads() == ["0004c"] and "name" not in app.columns()
    # The contract waited for the rollout, visibly, then ran once.
    states = contract_states(rec, app.name)
    assert "WaitingForRollout" in states and states[-1] == "Succeeded", states
    added = contract_job_added(rec, app.name)
    assert added.obj["metadata"]["name"].endswith("-contract")
    assert added.at > last_gone(rec, "rename", ctx.images["ec-v1"]), (
        "contract Job before the last v1 pod left"
    )
    # Old and new pods kept reading and writing their own column through the whole rollout.
    assert set(restarts(rec, "rename").values()) == {0}, restarts(rec, "rename")


def test_a_failed_contract_stalls_and_the_new_pods_keep_serving(ctx: Ctx) -> None:
    app = ctx.app("failing")
    with ctx.recorder() as rec:
        app.apply("ec-v2-contract-broken", "ec-v2")
        st = app.wait_condition("Stalled", timeout=240)
        app.wait_rolled_out("ec-v2-contract-broken")
    assert st["phase"] == "Failed", st
    assert st["phases"]["expand"]["state"] == "Succeeded", st
    assert st["phases"]["contract"]["state"] == "Failed", st
    assert "contract phase" in st["message"] and "keep serving" in st["message"], st
    assert st["migratedImage"] == ctx.images["ec-v2-contract-broken"]
    assert "contracted" not in st
    assert app.condition("Ready")["status"] == "False"
    # The expand half stands: both columns, the contract revision not applied.
    assert app.heads() == ["0004"] and {"name", "title"} <= app.columns()
    pods = [p for p in app.pods() if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == REPLICAS and all(gatewatch.ready(p) for p in pods)
    assert not any(gatewatch.gated(p) for p in pods)
    assert set(restarts(rec, "failing").values()) == {0}, restarts(rec, "failing")


def test_a_scale_up_during_the_wait_does_not_end_it_early(ctx: Ctx) -> None:
    app = ctx.app("scale")
    app.apply("ec-v1", "ec-v1")
    app.wait_ready("ec-v1")
    app.wait_rolled_out("ec-v1")
    # New pods count as available only 6 s after Ready: the rollout lasts long enough to scale.
    ctx.kubectl("patch", "deployment", app.name, "-p", json.dumps({"spec": {"minReadySeconds": 6}}))

    with ctx.recorder() as rec:
        app.apply("ec-v2", "ec-v2")

        def waiting() -> dict[str, Any]:
            st = app.status()
            contract = (st.get("phases") or {}).get("contract") or {}
            assert contract.get("state") == "WaitingForRollout", st
            return st

        st = eventually(waiting, timeout=180, interval=0.2)
        assert f"waiting for rollout of deployment/{app.name}" in st["message"], st
        ctx.kubectl("scale", "deployment", app.name, "--replicas=4")
        app.wait_ready("ec-v2")
        app.wait_rolled_out("ec-v2", replicas=4)

    added = contract_job_added(rec, app.name)
    # When the contract Job appeared, four ec-v2 pods were Ready and no ec-v1 pod was left.
    live = [pods for event, pods in rec.states("Pod") if event.at <= added.at][-1]
    mine = [
        p
        for p in live.values()
        if p["metadata"]["labels"].get("app.kubernetes.io/instance") == "scale"
    ]
    ready_new = [
        p for p in mine if gatewatch.image_of(p) == ctx.images["ec-v2"] and gatewatch.ready(p)
    ]
    assert len(ready_new) >= 4, [p["metadata"]["name"] for p in mine]
    assert not [p for p in mine if gatewatch.image_of(p) == ctx.images["ec-v1"]]
    assert app.heads() == ["0004c"]
    assert set(restarts(rec, "scale").values()) == {0}, restarts(rec, "scale")


def test_manual_contract_waits_for_its_annotation_and_a_rollback_past_it_is_refused(
    ctx: Ctx,
) -> None:
    """spec.contract.policy Manual, then runner.ifAhead fail on a rollback to ec-v1."""
    app = ctx.app("manual")  # its database and Secret; no Deployment: nothing to roll out
    spec = {
        "image": ctx.images["ec-v2"],
        "databaseURL": {"secretKeyRef": {"name": "manual-db", "key": "url"}},
        "contract": {"policy": "Manual"},
        "runner": {"ifAhead": "fail"},
    }
    dbm = {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": app.name}}
    ctx.kubectl("apply", "-f", "-", input=json.dumps({**dbm, "spec": spec}))

    def awaiting() -> dict[str, Any]:
        st = app.status()
        assert st.get("phase") == "AwaitingApproval", st
        return st

    st = eventually(awaiting, timeout=180, interval=0.3)
    assert app.condition("Ready")["reason"] == c.REASON_AWAITING_CONTRACT_APPROVAL
    assert f"{c.ANNOTATION_CONTRACT}={st['contentHash']}" in st["message"], st
    kinds = [j["metadata"]["labels"].get(c.LABEL_JOB_KIND) for j in app.jobs()]
    assert app.heads() == ["0004"] and c.JOB_KIND_CONTRACT not in kinds, kinds
    approve = f"{c.ANNOTATION_CONTRACT}={st['contentHash']}"
    ctx.kubectl("annotate", "dbm", app.name, approve)
    done = app.wait_ready("ec-v2")
    assert done["phases"]["contract"]["state"] == "Succeeded", done
    assert app.heads() == ["0004c"]

    # Back to ec-v1, whose code reads items.name: the runner refuses the database it does
    # not know, and the operator names the contract phase that dropped it.
    patch = {"spec": {"image": ctx.images["ec-v1"]}}
    ctx.kubectl("patch", "dbm", app.name, "--type=merge", "-p", json.dumps(patch))
    stalled = app.wait_condition("Stalled", timeout=180)
    assert stalled["message"].startswith("rollback past a contract phase"), stalled
    assert "0004c" in stalled["message"] and ctx.images["ec-v2"] in stalled["message"]
    assert stalled["migratedImage"] == ctx.images["ec-v2"]  # ec-v1 pods would stay gated
    events = ctx.get("events", "--field-selector", "reason=RollbackPastContract")["items"]
    assert events and "0004c" in events[0]["message"], events
    assert app.heads() == ["0004c"]
