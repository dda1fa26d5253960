"""Expand, wait for the rollout, contract: the decision from observed objects to a plan."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from controller_objects import T1, job, migration, pod, result
from migrategate.api import constants as c
from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller import expand_contract
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.migration_decision import Config, Observed, decide
from migrategate.controller.naming import content_hash
from migrategate.controller.rollout import DeploymentFacts, PodImages, RolloutFacts
from migrategate.controller.status import diff

SPEC = {
    "image": "app:2",
    "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
    "gate": {"deployments": ["shop"]},
    "retry": {"limit": 2, "backoffSeconds": 10, "maxBackoffSeconds": 60},
}
CFG = Config(runner_image="migrategate:test")
NOW = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)
CHASH = content_hash(DatabaseMigrationSpec.model_validate(SPEC))
EXPAND = f"shop-{CHASH}"
CONTRACT = f"shop-{CHASH}-contract"
PHASED = {
    "phase": "expand",
    "hasContractBranch": True,
    "contractBranch": "contract",
    "expandHeads": ["0004"],
    "contractHeads": ["0004c"],
}


def body(spec=None, status=None, annotations=None, generation=1):
    return migration(spec or SPEC, status, annotations, generation)


def expanded(**extra):
    """The expand Job, done: it applied 0004 and says there is a contract branch."""
    message = result(0, toRevisions=["0004"], appliedRevisions=["0004"], **PHASED, **extra)
    return [job(name=EXPAND, chash=CHASH, state="complete", image="app:2")], [
        pod(EXPAND, 0, message, phase="Succeeded")
    ]


def deployment(updated=5, old_pods=0, replicas=5):
    pods = tuple(PodImages(f"new-{i}", frozenset({"app:2"}), "shop", False) for i in range(updated))
    pods += tuple(
        PodImages(f"old-{i}", frozenset({"app:1"}), "shop", False) for i in range(old_pods)
    )
    return RolloutFacts(
        deployments=(
            DeploymentFacts(
                "shop", True, 2, 2, replicas, updated, updated, updated + old_pods, pods
            ),
        )
    )


def run(b, jobs=(), pods=(), rollout=None, now=NOW):
    obs = Observed(b, [job_facts(j) for j in jobs], [pod_facts(p) for p in pods], now, rollout)
    return decide(obs, CFG)


def cond(plan, kind):
    return next(x for x in plan.status["conditions"] if x["type"] == kind)


def test_the_first_job_runs_the_expand_phase():
    plan = run(body())
    args = plan.create["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[args.index("--phase") + 1] == "expand"
    assert "--contract-branch" not in args  # the default label


def test_an_explicit_target_keeps_a_single_run():
    spec = {**SPEC, "alembic": {"target": "0004"}}
    args = run(body(spec=spec)).create["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--phase" not in args  # the runner's default for an explicit target: all


def test_a_contract_branch_label_is_passed_and_is_content():
    spec = {**SPEC, "contract": {"branch": "drop"}}
    plan = run(body(spec=spec))
    args = plan.create["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[args.index("--contract-branch") + 1] == "drop"
    assert CHASH not in plan.create["metadata"]["name"]
    manual = DatabaseMigrationSpec.model_validate({**SPEC, "contract": {"policy": "Manual"}})
    assert content_hash(manual) == CHASH  # the policy only decides whether a person looks


def test_expand_done_asks_for_the_rollout_facts():
    jobs, pods = expanded()
    plan = run(body(), jobs, pods)
    assert plan.needs_rollout and plan.create is None


def test_expand_done_releases_pods_and_waits_for_the_rollout():
    jobs, pods = expanded()
    plan = run(body(status={"phase": "Running", "jobName": EXPAND}), jobs, pods, deployment(3, 2))
    st = plan.status
    assert st["migratedImage"] == "app:2"  # the gate releases the new pods now
    assert st["phase"] == "Running"
    assert cond(plan, "Ready")["status"] == "False"
    assert cond(plan, "Reconciling")["status"] == "True"
    assert cond(plan, "Ready")["reason"] == c.REASON_WAITING_FOR_ROLLOUT
    assert "waiting for rollout of deployment/shop: 3/5 updated" in st["message"]
    assert st["phases"]["expand"] == {
        "state": "Succeeded",
        "jobName": EXPAND,
        "targetRevisions": ["0004"],
        "appliedRevisions": ["0004"],
        "finishedAt": T1,
    }
    contract = st["phases"]["contract"]
    assert contract["state"] == "WaitingForRollout"
    assert contract["targetRevisions"] == ["0004c"]
    assert contract["message"].startswith("waiting for rollout of deployment/shop: 3/5 updated")
    assert plan.watch_rollout and plan.create is None
    assert plan.events[0][1] == c.REASON_WAITING_FOR_ROLLOUT
    assert plan.finished == ("succeeded", 1.25)  # the expand Job's outcome


def test_the_contract_job_starts_once_the_last_old_pod_is_gone():
    jobs, pods = expanded()
    waiting = run(body(), jobs, pods, deployment(5, 1)).status
    plan = run(body(status=waiting), jobs, pods, deployment(5, 0))
    job_body = plan.create
    assert job_body["metadata"]["name"] == CONTRACT
    assert job_body["metadata"]["labels"][c.LABEL_JOB_KIND] == c.JOB_KIND_CONTRACT
    args = job_body["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[args.index("--phase") + 1] == "contract"
    st = plan.status
    assert st["jobName"] == CONTRACT and st["phase"] == "Running"
    assert cond(plan, "Ready")["reason"] == c.REASON_CONTRACT_RUNNING
    assert st["phases"]["contract"] == {
        "state": "Running",
        "jobName": CONTRACT,
        "targetRevisions": ["0004c"],
    }
    assert not plan.watch_rollout
    # The merge patch deletes the waiting message inside status.phases.contract.
    assert diff(waiting, st)["phases"]["contract"]["message"] is None


def contracted(exit_code=0, state="complete", **extra):
    jobs, pods = expanded()
    applied = ["0004c"] if exit_code == 0 else []
    message = result(
        exit_code,
        toRevisions=["0004c"] if exit_code == 0 else ["0004"],
        appliedRevisions=applied,
        **{**PHASED, "phase": "contract"},
        **extra,
    )
    jobs.append(job(name=CONTRACT, chash=CHASH, state=state, kind=c.JOB_KIND_CONTRACT))
    pods.append(pod(CONTRACT, exit_code, message, phase="Succeeded" if not exit_code else None))
    return jobs, pods


def test_a_running_contract_job_is_adopted_without_reading_the_rollout():
    jobs, pods = expanded()
    jobs.append(job(name=CONTRACT, chash=CHASH, kind=c.JOB_KIND_CONTRACT))
    pods.append(pod(CONTRACT))
    plan = run(body(), jobs, pods)
    assert not plan.needs_rollout and plan.create is None
    assert cond(plan, "Ready")["reason"] == c.REASON_CONTRACT_RUNNING


def test_ready_only_after_both_phases():
    jobs, pods = contracted()
    plan = run(body(), jobs, pods)
    st = plan.status
    assert st["phase"] == "Succeeded" and cond(plan, "Ready")["status"] == "True"
    assert cond(plan, "Reconciling")["status"] == "False"
    assert st["currentRevision"] == ["0004c"] and st["appliedRevisions"] == ["0004c"]
    assert st["phases"]["contract"]["state"] == "Succeeded"
    assert st["phases"]["contract"]["appliedRevisions"] == ["0004c"]
    assert st["contracted"] == {"image": "app:2", "revisions": ["0004c"], "finishedAt": T1}
    assert st["message"].startswith("expand (0004) and contract (0004c) done")


def test_a_failed_contract_stalls_and_the_new_pods_keep_their_image():
    jobs, pods = contracted(exit_code=4, state="failed", message="DROP COLUMN failed")
    plan = run(body(), jobs, pods, now=NOW + timedelta(hours=1))
    st = plan.status
    assert st["phase"] == "Failed" and cond(plan, "Stalled")["status"] == "True"
    assert st["migratedImage"] == "app:2"  # the gate keeps releasing the new pods
    assert "contract phase: MigrationFailed" in st["message"]
    assert "the new pods keep serving on the expanded schema" in st["message"]
    assert st["phases"]["contract"]["state"] == "Failed"
    assert st["phases"]["expand"]["state"] == "Succeeded"
    assert plan.create is None and "contracted" not in st


def test_a_transient_contract_failure_retries_the_contract_job():
    jobs, pods = contracted(exit_code=3, state="failed")
    waiting = run(body(), jobs, pods)
    assert waiting.create is None and waiting.status["phase"] == "Pending"
    assert waiting.status["phases"]["contract"]["state"] == "Pending"
    due = run(body(status=waiting.status), jobs, pods, now=NOW + timedelta(seconds=30))
    assert due.create["metadata"]["name"] == f"{CONTRACT}-2"


def test_manual_policy_waits_for_the_contract_annotation():
    spec = {**SPEC, "contract": {"policy": "Manual"}}
    jobs, pods = expanded()
    plan = run(body(spec=spec), jobs, pods, deployment())
    assert plan.create is None
    assert plan.status["phase"] == "AwaitingApproval"
    assert cond(plan, "Ready")["reason"] == c.REASON_AWAITING_CONTRACT_APPROVAL
    assert f"{c.ANNOTATION_CONTRACT}={CHASH}" in plan.status["message"]
    assert plan.status["phases"]["contract"]["state"] == "AwaitingApproval"
    stale = run(
        body(spec=spec, annotations={c.ANNOTATION_CONTRACT: "0123456789"}), jobs, pods, deployment()
    )
    assert stale.create is None
    approved = run(
        body(spec=spec, annotations={c.ANNOTATION_CONTRACT: CHASH.upper()}),
        jobs,
        pods,
        deployment(),
    )
    assert approved.create["metadata"]["name"] == CONTRACT


def test_manual_policy_still_waits_for_the_rollout_first():
    spec = {**SPEC, "contract": {"policy": "Manual"}}
    jobs, pods = expanded()
    plan = run(
        body(spec=spec, annotations={c.ANNOTATION_CONTRACT: CHASH}), jobs, pods, deployment(5, 1)
    )
    assert plan.create is None and plan.watch_rollout


def test_scripts_without_a_contract_branch_finish_as_before():
    name = f"shop-{CHASH}"
    no_branch = {**PHASED, "hasContractBranch": False, "contractHeads": []}
    jobs = [job(name=name, chash=CHASH, state="complete", image="app:2")]
    pods = [pod(name, 0, result(0, **no_branch), phase="Succeeded")]
    plan = run(body(), jobs, pods)
    assert plan.status["phase"] == "Succeeded" and cond(plan, "Ready")["status"] == "True"
    assert "phases" not in plan.status and not plan.needs_rollout


def test_phase_all_is_a_single_phase_even_with_a_contract_branch():
    name = f"shop-{CHASH}"
    jobs = [job(name=name, chash=CHASH, state="complete", image="app:2")]
    pods = [pod(name, 0, result(0, **{**PHASED, "phase": "all"}), phase="Succeeded")]
    assert run(body(), jobs, pods).status["phase"] == "Succeeded"


def test_the_wait_goes_on_when_the_expand_job_is_gone():
    jobs, pods = expanded()
    waiting = run(body(), jobs, pods, deployment(5, 1)).status
    plan = run(body(status=waiting), rollout=None)
    assert plan.needs_rollout and plan.create is None
    done = run(body(status=waiting), rollout=deployment())
    assert done.create["metadata"]["name"] == CONTRACT
    assert done.status["migratedImage"] == "app:2"


def test_a_finished_contract_stands_when_its_jobs_are_gone():
    jobs, pods = contracted()
    finished = run(body(), jobs, pods).status
    again = run(body(status=finished))
    assert again.create is None and not again.needs_rollout
    assert again.status == finished


def test_a_new_image_while_waiting_starts_its_own_expand():
    jobs, pods = expanded()
    waiting = run(body(), jobs, pods, deployment(3, 2)).status
    spec = {**SPEC, "image": "app:3"}
    plan = run(body(spec=spec, status=waiting), jobs, pods)
    assert plan.create and "contract" not in plan.create["metadata"]["name"]
    assert "phases" not in plan.status  # known again from the new expand Job


def test_a_rollback_past_the_contract_warns_naming_the_revisions():
    prior = {"contracted": {"image": "app:2", "revisions": ["0004c"]}}
    spec = {**SPEC, "image": "app:1"}
    chash = content_hash(DatabaseMigrationSpec.model_validate(spec))
    name = f"shop-{chash}"
    ahead = "database is at 0004c, ahead of this image's scripts"
    jobs = [job(name=name, chash=chash, state="complete", image="app:1")]
    done = result(0, appliedRevisions=[], warnings=[ahead], unknownRevisions=["0004c"])
    pods = [pod(name, 0, done, phase="Succeeded")]
    plan = run(body(spec=spec, status=prior), jobs, pods)
    assert plan.status["phase"] == "Succeeded"
    assert "rollback past a contract phase" in plan.status["message"]
    warning = [e for e in plan.events if e[1] == "RollbackPastContract"]
    assert warning and "0004c" in warning[0][2] and warning[0][0] == "Warning"


def test_a_refused_rollback_stalls_naming_the_contracted_revisions():
    prior = {"contracted": {"image": "app:2", "revisions": ["0004c"]}}
    spec = {**SPEC, "image": "app:1", "runner": {"ifAhead": "fail"}}
    chash = content_hash(DatabaseMigrationSpec.model_validate(spec))
    name = f"shop-{chash}"
    refusal = result(
        2,
        errorClass="BadInput",
        message="database is at 0004c, ahead of the image",
        unknownRevisions=["0004c"],
    )
    jobs = [job(name=name, chash=chash, state="failed", image="app:1")]
    pods = [pod(name, 2, refusal)]
    plan = run(body(spec=spec, status=prior), jobs, pods, now=NOW + timedelta(hours=1))
    assert plan.status["phase"] == "Failed"
    assert plan.status["message"].startswith("rollback past a contract phase: app:1")
    assert "0004c" in plan.status["message"]
    assert any(e[1] == "RollbackPastContract" for e in plan.events)


def test_past_contract_is_silent_for_the_same_image_and_other_revisions():
    contracted_ = {"image": "app:2", "revisions": ["0004"]}
    ahead = {"unknownRevisions": ["0004"], "warnings": ["database is at 0004, ahead ..."]}
    assert expand_contract.past_contract(contracted_, "app:2", ahead) is None
    assert expand_contract.past_contract(contracted_, "app:3", {"warnings": ["slow"]}) is None
    assert expand_contract.past_contract(None, "app:1", ahead) is None
    assert "0004" in (expand_contract.past_contract(contracted_, "app:1", ahead) or "")
    # Revisions are compared whole: 0004c is not 0004, whatever the message text says.
    other = {"unknownRevisions": ["0004c"], "message": "database is at 0004c, ahead"}
    assert expand_contract.past_contract(contracted_, "app:1", other) is None


def test_split_of_reads_the_runner_result():
    assert expand_contract.split_of(PHASED) == expand_contract.Split(("0004",), ("0004c",))
    assert expand_contract.split_of({**PHASED, "phase": "all"}) is None
    assert expand_contract.split_of({**PHASED, "hasContractBranch": False}) is None
    assert expand_contract.split_of(None) is None


def test_the_rollout_facts_do_not_change_a_plan_that_does_not_need_them():
    plan = run(body(), rollout=deployment())
    assert plan.create and not plan.watch_rollout
    assert replace(plan, create=None).needs_rollout is False


def test_a_contract_job_from_before_a_rerun_expand_does_not_count():
    # A rollback to this content ran its expand Job again (attempt 2, later): the old
    # contract Job describes a database that newer images moved on from.
    jobs, pods = contracted()
    rerun = f"{EXPAND}-2"
    later = "2026-01-01T00:10:00Z"
    jobs.append(
        job(name=rerun, chash=CHASH, attempt=2, state="complete", image="app:2", created=later)
    )
    pods.append(pod(rerun, 0, result(0, appliedRevisions=[], **PHASED), phase="Succeeded"))
    plan = run(body(), jobs, pods, deployment(), now=NOW + timedelta(minutes=20))
    assert plan.create["metadata"]["name"] == f"{CONTRACT}-2"  # a new name: Jobs are never reused
    assert plan.status["phases"]["contract"]["state"] == "Running"
