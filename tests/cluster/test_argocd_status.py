"""The Argo CD health check's testdata is what the operator really writes.

Each case drives a DatabaseMigration into one state on the real cluster (migrated,
stalled on bad input, retrying a transient failure, suspended; between the expand and
the contract phase, a contract awaiting approval, a failed contract), reads it back,
normalises what changes from run to run (times, uids, the image, the content
hash) and compares it with argocd/resource_customizations/.../testdata/<case>.yaml;
health.lua, run on the live object, must give what health_test.yaml expects.

To capture the objects again after the operator's status changes:
MIGRATEGATE_CAPTURE_TESTDATA=1 (the test then writes the files and fails, so a
capture is never mistaken for a check).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness.wait import eventually
from operatorkit import Cluster, gated_pod

HEALTH = Path(__file__).resolve().parents[2] / (
    "argocd/resource_customizations/migrategate.io/DatabaseMigration"
)
CAPTURE = os.environ.get("MIGRATEGATE_CAPTURE_TESTDATA") == "1"
STYLE = "seed004_ini_url"
IMAGE = "registry.example.com/shop:1.0.0"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
DATABASE = re.compile(r"\bdb_[0-9a-f]+\b")  # pgserver's throwaway database names
KEPT_METADATA = ("name", "namespace", "generation")


def normalise(obj: dict[str, Any], image: str, namespace: str, host: str) -> dict[str, Any]:
    """The object as testdata keeps it: the fields health.lua may read, stable across runs."""
    chash = (obj.get("status") or {}).get("contentHash", "")

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            value = TIME.sub("2026-01-01T00:00:00Z", value.replace(image, IMAGE))
            value = value.replace(namespace, "default").replace(host, "postgres")
            value = DATABASE.sub("shop", value)
            return value.replace(chash, "0a1b2c3d4e") if chash else value
        if isinstance(value, float):
            return 1.0  # durationSeconds
        return value

    meta = {k: v for k, v in obj["metadata"].items() if k in KEPT_METADATA}
    out = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta}
    out["spec"] = obj["spec"]
    if "status" in obj:
        out["status"] = obj["status"]
    return clean(out)


def expected(case: str) -> dict[str, str]:
    tests = yaml.safe_load((HEALTH / "health_test.yaml").read_text())["tests"]
    (found,) = [t["healthStatus"] for t in tests if t["inputPath"] == f"testdata/{case}.yaml"]
    return found


def health_of(obj: dict[str, Any]) -> dict[str, str]:
    from unit.test_argocd_health import assess  # the unit tests' Lua 5.1 sandbox (Argo CD's)

    status, message = assess(obj)
    return {"status": status, "message": message}


def settle(cluster: Cluster, name: str, phase: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any]:
        obj = cluster.get("dbm", name)
        st = obj.get("status") or {}
        ready = {c["type"]: c for c in st.get("conditions") or []}.get("Ready", {})
        assert (st.get("phase"), ready.get("reason")) == (phase, reason), st
        assert st.get("observedGeneration") == obj["metadata"]["generation"], st
        return obj

    return eventually(check, timeout=180, interval=0.3)


@dataclass(frozen=True)
class Case:
    spec: dict[str, Any]  # spec changes
    phase: str
    reason: str  # Ready's
    version: str = "v1"  # of the sample image
    old_pod: bool = False  # a pod of another image that names the migration (a rollout under way)


CASES = {
    "healthy": Case({}, "Succeeded", "Succeeded"),
    "degraded_bad_input": Case({"alembic": {"target": "nope"}}, "Failed", "BadInput"),
    "progressing_retrying": Case(
        {"retry": {"limit": 5, "backoffSeconds": 3600, "maxBackoffSeconds": 3600}},
        "Pending",
        "Retrying",
    ),
    "suspended": Case({"suspend": True}, "Pending", "Suspended"),
    # Expand and contract (docs/expand-contract.md): between the phases, and after.
    "progressing_waiting_for_rollout": Case(
        {}, "Running", "WaitingForRollout", "ec-v2", old_pod=True
    ),
    "suspended_awaiting_contract": Case(
        {"contract": {"policy": "Manual"}}, "AwaitingApproval", "AwaitingContractApproval", "ec-v2"
    ),
    "degraded_contract_failed": Case({}, "Failed", "MigrationFailed", "ec-v2-contract-broken"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_testdata_is_the_status_the_operator_writes(
    case: str, cluster: Cluster, operator, app_image, pg
) -> None:
    spec, phase, reason = CASES[case].spec, CASES[case].phase, CASES[case].reason
    db = pg.create_database()
    if case == "progressing_retrying":  # nothing listens there: exit 3, a transient failure
        url = pg.url(db).replace(f":{pg.port}/", ":1/")
    else:
        url = pg.url(db)
    cluster.secret("db", url)
    if CASES[case].old_pod:
        # A pod of another image that names the migration; gated, so it never runs.
        cluster.apply(gated_pod("old-app", "busybox", "shop"))
    image = app_image(STYLE, CASES[case].version)
    cluster.migration("shop", image, "db", **spec)
    live = settle(cluster, "shop", phase, reason)

    captured = normalise(live, image, cluster.ns, pg.host)
    path = HEALTH / "testdata" / f"{case}.yaml"
    if CAPTURE:  # before the health check: the messages in health_test.yaml come from it
        path.write_text(yaml.safe_dump(captured, sort_keys=False, width=100))
        pytest.fail(f"captured {path}; run again without MIGRATEGATE_CAPTURE_TESTDATA")
    assert health_of(live)["status"] == expected(case)["status"]
    # Messages carry times and names that the normalised copy spells as in testdata.
    assert health_of(captured) == expected(case)
    assert captured == yaml.safe_load(path.read_text()), (
        f"{path} is not what the operator writes now; capture it again "
        "(MIGRATEGATE_CAPTURE_TESTDATA=1)"
    )
