"""spec.approval on the real cluster: a plan Job first, AwaitingApproval with pods gated,
approval of the current planHash migrates, a stale approval is ignored with an Event."""

from __future__ import annotations

import json
from typing import Any

import samples
from kubeharness.wait import eventually
from operatorkit import Cluster, db_heads, gated_pod


def gates(cluster: Cluster, pod: str) -> list[Any]:
    return cluster.get("pod", pod)["spec"].get("schedulingGates") or []


def events(cluster: Cluster, reason: str) -> list[str]:
    items = cluster.get("events", "--field-selector", f"reason={reason}")["items"]
    return [e.get("message") or "" for e in items]


def test_on_findings_waits_gated_and_migrates_the_approved_plan(cluster, operator, app_image, pg):
    db = cluster.new_database(pg)
    style = "seed004_ini_url"
    cluster.migration("shop", app_image(style, "v2"), "db")
    cluster.wait_ready("shop")
    v3 = app_image(style, "v3")
    cluster.apply(gated_pod("app-v3", v3, "shop"))
    patch = {"spec": {"image": v3, "approval": {"policy": "OnFindings"}}}
    cluster.kubectl("patch", "dbm", "shop", "--type=merge", "-p", json.dumps(patch))

    def awaiting() -> dict[str, Any]:
        st = cluster.status("shop")
        assert st.get("phase") == "AwaitingApproval", st
        return st

    st = eventually(awaiting, timeout=180)
    plan = st["plan"]
    assert plan["revisions"] == ["0005"] and plan["findingCounts"]["high"] >= 1, plan
    assert plan["lintStatus"] == "Linted", plan
    assert any(f["rule"] == "require-concurrent-index-creation" for f in plan["findings"])
    assert f"migrategate.io/approve={plan['hash']}" in st["message"]
    ready = next(x for x in st["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "AwaitingApproval"
    assert "AwaitingApproval" in cluster.kubectl("get", "dbm", "shop")
    # The SQL is in the plan Job's log, with the command status.plan gives.
    logs = cluster.cp.kubectl(*plan["logsCommand"].split()[1:])
    assert "CREATE UNIQUE INDEX ix_items_slug" in logs and plan["hash"] in logs, logs
    assert db_heads(pg, db) == [samples.head_of("v2")]
    assert gates(cluster, "app-v3"), "the v3 pod must stay gated"
    assert events(cluster, "AwaitingApproval")

    # A stale (or mistyped) approval is ignored, with an Event saying why.
    stale = "0" * 64
    cluster.kubectl("annotate", "dbm", "shop", f"migrategate.io/approve={stale}")
    eventually(lambda: assert_some(events(cluster, "ApprovalIgnored")), timeout=60)
    assert plan["hash"] in events(cluster, "ApprovalIgnored")[0]
    assert cluster.status("shop")["phase"] == "AwaitingApproval"
    assert db_heads(pg, db) == [samples.head_of("v2")]

    cluster.kubectl(
        "annotate", "dbm", "shop", f"migrategate.io/approve={plan['hash']}", "--overwrite"
    )
    done = cluster.wait_ready("shop", timeout=180)
    assert done["appliedRevisions"] == ["0005"] and done["migratedImage"] == v3
    assert db_heads(pg, db) == ["0005"]
    job = cluster.get("job", done["jobName"])
    assert job["metadata"]["annotations"]["migrategate.io/plan-hash"] == plan["hash"]
    eventually(lambda: assert_empty(gates(cluster, "app-v3")), timeout=60)


def assert_some(items: list[Any]) -> None:
    assert items


def assert_empty(items: list[Any]) -> None:
    assert not items, items
