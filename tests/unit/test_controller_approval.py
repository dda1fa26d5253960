"""spec.approval: plan Job first, status.plan, AwaitingApproval, approval, stale plans."""

import json
from datetime import UTC, datetime

from controller_objects import job, migration, pod
from migrategate.api import constants as c
from migrategate.api.models import ApprovalSpec, DatabaseMigrationSpec
from migrategate.controller import approval
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.migration_decision import Config, Observed, decide
from migrategate.controller.naming import content_hash

HASH = "ab" * 32
SPEC = {
    "image": "app:1",
    "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
    "approval": {"policy": "OnFindings"},
}
CHASH = content_hash(DatabaseMigrationSpec.model_validate(SPEC))
PLAN_JOB = f"shop-{CHASH}-plan"
NOW = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)


def planned(high=1, medium=0, lint="Linted", unrenderable=0, outcome="Planned", **extra):
    out = {
        "outcome": outcome,
        "exitCode": 0,
        "fromRevisions": ["0004"],
        "toRevisions": ["0004"],
        "targetRevisions": ["0005"],
        "planHash": HASH,
        "pendingRevisions": ["0005"] if outcome == "Planned" else [],
        "statementCount": 1,
        "findingCounts": {"low": 0, "medium": medium, "high": high},
        "findings": [
            {
                "revision": "0005",
                "rule": "require-concurrent-index-creation",
                "severity": "high",
                "message": "CREATE INDEX without CONCURRENTLY",
            }
        ]
        * high,
        "unrenderableCount": unrenderable,
        "unrenderable": [{"revision": "0005", "reason": "offline branch"}] * unrenderable,
        "lintStatus": lint,
        "linter": "squawk 2.0",
        "lintReason": None if lint == "Linted" else "squawk not found",
    }
    out.update(extra)
    return json.dumps(out)


def body(spec=None, status=None, annotations=None, generation=1):
    return migration(spec or SPEC, status, annotations, generation)


def plan_job(state="complete", attempt=1, name=PLAN_JOB):
    j = job(name=name, chash=CHASH, attempt=attempt, state=state)
    j["metadata"]["labels"][c.LABEL_JOB_KIND] = c.JOB_KIND_PLAN
    return j


def run(b, jobs=(), pods=()):
    obs = Observed(b, [job_facts(j) for j in jobs], [pod_facts(p) for p in pods], NOW)
    return decide(obs, Config(runner_image="migrategate:test"))


def args_of(created):
    return created["spec"]["template"]["spec"]["containers"][0]["command"]


def test_a_gated_migration_starts_with_a_plan_job():
    plan = run(body())
    assert plan.create["metadata"]["name"] == PLAN_JOB
    assert plan.create["metadata"]["labels"][c.LABEL_JOB_KIND] == c.JOB_KIND_PLAN
    command = args_of(plan.create)
    assert command[2] == "plan" and "--fail-on" not in command and "--plan-hash" not in command
    assert plan.status["phase"] == "Running"
    assert plan.status["plan"]["logsCommand"] == f"kubectl logs -n ns1 job/{PLAN_JOB} -c migrate"
    assert plan.events[0][1] == "PlanJobCreated"


def test_auto_never_plans_and_approval_is_not_content():
    auto = {**SPEC, "approval": {"policy": "Auto"}}
    plan = run(body(spec=auto))
    assert args_of(plan.create)[2] == "migrate"
    assert plan.create["metadata"]["name"] == f"shop-{CHASH}"
    assert content_hash(DatabaseMigrationSpec.model_validate(auto)) == CHASH


def test_a_high_finding_awaits_approval_with_the_commands_to_paste():
    plan = run(body(), jobs=[plan_job()], pods=[pod(PLAN_JOB, exit_code=0, message=planned())])
    assert plan.create is None
    assert plan.status["phase"] == "AwaitingApproval"
    ready = next(x for x in plan.status["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "AwaitingApproval"
    assert all(x["status"] == "False" for x in plan.status["conditions"])
    assert "1 high finding(s)" in plan.status["message"]
    assert f"migrategate.io/approve={HASH}" in plan.status["message"]
    status_plan = plan.status["plan"]
    assert status_plan["hash"] == HASH and status_plan["revisions"] == ["0005"]
    assert status_plan["findingCounts"] == {"low": 0, "medium": 0, "high": 1}
    assert status_plan["findings"][0]["rule"] == "require-concurrent-index-creation"
    assert status_plan["needsApproval"] is True and status_plan["lintStatus"] == "Linted"
    assert "migratedImage" not in plan.status  # the gate keeps the new pods
    assert [e[1] for e in plan.events] == ["AwaitingApproval"]


def test_approving_the_current_hash_starts_the_migration_with_it():
    b = body(annotations={c.ANNOTATION_APPROVE: HASH.upper()})
    plan = run(b, jobs=[plan_job()], pods=[pod(PLAN_JOB, exit_code=0, message=planned())])
    assert plan.create["metadata"]["name"] == f"shop-{CHASH}-2"
    command = args_of(plan.create)
    assert command[2] == "migrate" and command[-4:-2] == ["--plan-hash", HASH]
    assert command[-2:] == ["--phase", "expand"]
    assert plan.create["metadata"]["annotations"][c.ANNOTATION_PLAN_HASH] == HASH
    assert plan.status["plan"]["approved"] is True
    assert [e[1] for e in plan.events] == ["Approved", "JobCreated"]


def test_a_stale_approval_is_ignored_once_with_an_event():
    b = body(annotations={c.ANNOTATION_APPROVE: "cd" * 32})
    pods = [pod(PLAN_JOB, exit_code=0, message=planned())]
    plan = run(b, jobs=[plan_job()], pods=pods)
    assert plan.create is None and plan.status["phase"] == "AwaitingApproval"
    warned = [e for e in plan.events if e[1] == "ApprovalIgnored"]
    assert warned and warned[0][0] == "Warning" and HASH in warned[0][2]
    again = run(
        body(annotations=b["metadata"]["annotations"], status=plan.status), [plan_job()], pods
    )
    assert again.events == [] and again.create is None


def test_below_the_minimum_severity_it_migrates_unattended():
    msg = planned(high=0, medium=2)
    plan = run(body(), jobs=[plan_job()], pods=[pod(PLAN_JOB, exit_code=0, message=msg)])
    assert args_of(plan.create)[-4:-2] == ["--plan-hash", HASH]
    assert plan.status["plan"]["needsApproval"] is False
    medium = {**SPEC, "approval": {"policy": "OnFindings", "minSeverity": "medium"}}
    held = run(body(spec=medium), jobs=[plan_job()], pods=[pod(PLAN_JOB, exit_code=0, message=msg)])
    assert held.status["phase"] == "AwaitingApproval" and "2 medium" in held.status["message"]


def test_unrenderable_or_unlinted_plans_wait_and_always_waits_for_anything_pending():
    spec = ApprovalSpec.model_validate({"policy": "OnFindings"})
    assert "not renderable" in approval.why_approval(spec, json.loads(planned(0, unrenderable=1)))
    assert "lint skipped" in approval.why_approval(spec, json.loads(planned(0, lint="Skipped")))
    assert approval.why_approval(spec, json.loads(planned(0))) is None
    always = ApprovalSpec.model_validate({"policy": "Always"})
    assert approval.why_approval(always, json.loads(planned(0))) == "approval policy Always"
    nothing = json.loads(planned(0, outcome="UpToDate"))
    assert approval.why_approval(always, nothing) is None


def test_a_refused_stale_plan_makes_a_new_plan():
    migrate = job(name=f"shop-{CHASH}-2", chash=CHASH, attempt=2, state="failed")
    stale = json.dumps(
        {
            "outcome": "Failed",
            "exitCode": 2,
            "errorClass": "BadInput",
            "message": "the approved plan abababababab is stale: ...",
            "stalePlan": True,
            "planHash": "ef" * 32,
        }
    )
    pods = [pod(f"shop-{CHASH}-2", exit_code=2, message=stale)]
    plan = run(body(), jobs=[plan_job(), migrate], pods=pods)
    assert plan.create["metadata"]["name"] == f"shop-{CHASH}-plan-3"
    assert plan.status["phase"] == "Running"
    assert [e[1] for e in plan.events][:1] == ["StalePlan"]


def test_a_plan_job_that_cannot_reach_the_database_is_retried_as_a_plan():
    failed = plan_job(state="failed")
    transient = json.dumps({"outcome": "Failed", "exitCode": 3, "errorClass": "Transient"})
    plan = run(body(), jobs=[failed], pods=[pod(PLAN_JOB, exit_code=3, message=transient)])
    assert plan.status["phase"] == "Pending" and plan.requeue_after


def test_a_succeeded_plan_job_never_counts_as_migrated():
    other = plan_job()
    other["metadata"]["labels"][c.LABEL_CONTENT_HASH] = "old"
    b = body(status={"jobName": PLAN_JOB, "phase": "Running"})
    plan = run(b, jobs=[other])
    assert "migratedImage" not in plan.status
