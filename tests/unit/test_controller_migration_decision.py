"""The reconcile decision, from observed objects to a plan."""

from datetime import UTC, datetime, timedelta

from controller_objects import T0, T1, job, migration, pod, result
from migrategate.api import constants as c
from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.migration_decision import Config, Observed, decide
from migrategate.controller.naming import content_hash

SPEC = {
    "image": "app:1",
    "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
    "retry": {"limit": 2, "backoffSeconds": 10, "maxBackoffSeconds": 60},
}
CFG = Config(runner_image="migrategate:test")
NOW = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)
CHASH = content_hash(DatabaseMigrationSpec.model_validate(SPEC))


def body(spec=None, status=None, annotations=None, generation=1):
    return migration(spec or SPEC, status, annotations, generation)


def run(b, jobs=(), pods=(), now=NOW):
    obs = Observed(b, [job_facts(j) for j in jobs], [pod_facts(p) for p in pods], now)
    return decide(obs, CFG)


def cond(plan, kind):
    return next(x for x in plan.status["conditions"] if x["type"] == kind)


def test_new_migration_creates_the_first_job():
    plan = run(body())
    assert plan.create["metadata"]["name"] == f"shop-{CHASH}"
    assert plan.status["phase"] == "Running"
    assert plan.status["attempts"] == 1
    assert plan.status["observedGeneration"] == 1
    assert cond(plan, "Reconciling")["status"] == "True"
    assert plan.events and plan.events[0][1] == "JobCreated"


def test_existing_job_is_adopted_not_duplicated():
    plan = run(body(), jobs=[job(name=f"shop-{CHASH}", chash=CHASH)], pods=[pod(f"shop-{CHASH}")])
    assert plan.create is None
    assert plan.status["phase"] == "Running" and plan.status["jobName"] == f"shop-{CHASH}"


def test_success_copies_the_result_and_sets_ready():
    name = f"shop-{CHASH}"
    plan = run(
        body(status={"phase": "Running", "jobName": name}),
        jobs=[job(name=name, chash=CHASH, state="complete")],
        pods=[pod(name, exit_code=0, message=result(0, warnings=["db ahead"]), phase="Succeeded")],
    )
    st = plan.status
    assert st["phase"] == "Succeeded" and st["migratedImage"] == "app:1"
    assert st["currentRevision"] == ["b2"] and st["appliedRevisions"] == ["b2"]
    assert st["targetRevision"] == ["b2"] and st["durationSeconds"] == 1.25
    assert st["finishedAt"] == T1
    assert "warning: db ahead" in st["message"]
    assert cond(plan, "Ready")["status"] == "True"
    assert plan.finished == ("succeeded", 1.25)
    assert plan.create is None


def test_reconciling_a_finished_status_again_changes_nothing():
    name = f"shop-{CHASH}"
    args = dict(
        jobs=[job(name=name, chash=CHASH, state="complete")], pods=[pod(name, 0, result(0))]
    )
    first = run(body(), **args)
    second = run(body(status=first.status), now=NOW + timedelta(minutes=5), **args)
    assert second.status == first.status
    assert not second.events and second.finished is None and second.create is None


def test_permanent_failure_stalls_masked_and_does_not_retry():
    name = f"shop-{CHASH}"
    msg = "connection to postgresql://app:hunter2@db/shop failed in revision b2"
    plan = run(
        body(),
        jobs=[job(name=name, chash=CHASH, state="failed")],
        pods=[pod(name, exit_code=4, message=result(4, message=msg))],
        now=NOW + timedelta(hours=1),
    )
    assert plan.create is None
    assert plan.status["phase"] == "Failed"
    assert cond(plan, "Stalled")["status"] == "True"
    assert cond(plan, "Ready")["status"] == "False"
    assert "hunter2" not in plan.status["message"] and "MigrationFailed" in plan.status["message"]
    assert plan.events[0][0] == "Warning"


def test_missing_secret_stalls_naming_the_secret_and_removes_the_stuck_job():
    name = f"shop-{CHASH}"
    plan = run(
        body(),
        jobs=[job(name=name, chash=CHASH)],
        pods=[pod(name, waiting=("CreateContainerConfigError", 'secret "db" not found'))],
    )
    assert plan.status["phase"] == "Failed"
    assert "Secret 'db'" in plan.status["message"]
    assert name in plan.delete
    # ...and once it is gone, nothing is started again for the same content.
    again = run(body(status=plan.status))
    assert again.create is None and again.status["phase"] == "Failed"


def test_another_config_error_stalls_with_the_kubelets_message_not_the_secret():
    name = f"shop-{CHASH}"
    text = "container has runAsNonRoot and image has non-numeric user (app), cannot verify user"
    plan = run(
        body(),
        jobs=[job(name=name, chash=CHASH)],
        pods=[pod(name, waiting=("CreateContainerConfigError", text))],
    )
    assert plan.status["phase"] == "Failed" and name in plan.delete
    assert cond(plan, "Ready")["reason"] == "CreateContainerConfigError"
    assert plan.status["message"] == f"CreateContainerConfigError: {text}"
    assert "Secret" not in plan.status["message"]


def test_a_failing_pull_keeps_the_job_and_rechecks_when_the_grace_ends():
    name = f"shop-{CHASH}"
    stuck = dict(
        jobs=[job(name=name, chash=CHASH)],
        pods=[pod(name, waiting=("ErrImagePull", "registry.example: 503"))],
    )
    early = run(body(), **stuck)  # the pod was created at T0 = NOW - 6 s
    assert early.status["phase"] == "Running" and not early.delete and early.create is None
    assert cond(early, "Stalled")["status"] == "False"
    assert "ErrImagePull: registry.example: 503" in early.status["message"]
    assert "2026-01-01T00:01:00Z" in early.status["message"]
    assert early.requeue_after == 54.0
    late = run(body(status=early.status), now=NOW + timedelta(seconds=54), **stuck)
    assert late.status["phase"] == "Failed" and name in late.delete
    assert cond(late, "Ready")["reason"] == "ErrImagePull"


def test_transient_failure_waits_for_backoff_then_retries():
    name = f"shop-{CHASH}"
    failed = dict(
        jobs=[job(name=name, chash=CHASH, state="failed")], pods=[pod(name, 3, result(3))]
    )
    waiting = run(body(status={"currentRevision": ["a1"]}), **failed)
    assert waiting.status["currentRevision"] == ["a1"]  # unknown while the database is away
    assert waiting.create is None
    assert waiting.status["phase"] == "Pending"
    assert cond(waiting, "Reconciling")["status"] == "True"
    assert 8 - 1 <= waiting.requeue_after <= 12 - 1  # 10 s +-20 %, from T1 = NOW - 1 s
    assert "outcome" not in waiting.status["message"]
    assert waiting.status["nextAttemptAt"]
    due = run(body(status=waiting.status), now=NOW + timedelta(seconds=20), **failed)
    assert due.create["metadata"]["name"] == f"shop-{CHASH}-2"
    assert due.status["attempts"] == 2 and "nextAttemptAt" not in due.status


def test_retries_stop_at_the_limit():
    jobs = [
        job(
            name=f"shop-{CHASH}" + (f"-{n}" if n > 1 else ""),
            chash=CHASH,
            attempt=n,
            state="failed",
        )
        for n in (1, 2, 3)
    ]
    pods = [pod(j["metadata"]["name"], 3, result(3)) for j in jobs]
    plan = run(body(), jobs=jobs, pods=pods, now=NOW + timedelta(hours=1))
    assert plan.create is None
    assert plan.status["phase"] == "Failed" and plan.status["attempts"] == 3
    assert cond(plan, "Stalled")["reason"] == "RetriesExhausted"


def test_spec_change_and_rerun_annotation_start_a_new_job_after_failure():
    old = f"shop-{CHASH}"
    observed = dict(
        jobs=[job(name=old, chash=CHASH, state="failed")], pods=[pod(old, 4, result(4))]
    )
    stalled = run(body(), **observed).status
    changed = run(body(spec={**SPEC, "image": "app:2"}, status=stalled, generation=2), **observed)
    assert changed.create and changed.create["metadata"]["name"] != old
    assert changed.status["observedGeneration"] == 2 and changed.status["attempts"] == 1
    rerun = run(body(status=stalled, annotations={c.ANNOTATION_RERUN: "1"}), **observed)
    assert rerun.create and rerun.create["metadata"]["name"] != old


def test_suspend_holds_new_jobs():
    plan = run(body(spec={**SPEC, "suspend": True}))
    assert plan.create is None and cond(plan, "Ready")["reason"] == "Suspended"


def test_new_content_waits_for_a_running_job_of_the_old_one():
    plan = run(body(spec={**SPEC, "image": "app:2"}), jobs=[job(name=f"shop-{CHASH}", chash=CHASH)])
    assert plan.create is None
    assert cond(plan, "Reconciling")["reason"] == "WaitingForPreviousJob"


def test_history_keeps_the_newest_finished_jobs():
    spec = {**SPEC, "image": "app:9", "historyLimit": 2}
    new_hash = content_hash(DatabaseMigrationSpec.model_validate(spec))
    old = [
        job(
            name=f"shop-old{i}",
            chash=f"old{i}",
            state="complete",
            created=f"2026-01-0{i}T00:00:00Z",
        )
        for i in (1, 2, 3)
    ]
    current = job(
        name=f"shop-{new_hash}", chash=new_hash, state="complete", created="2026-01-09T00:00:00Z"
    )
    plan = run(body(spec=spec), jobs=[*old, current], pods=[pod(f"shop-{new_hash}", 0, result(0))])
    assert sorted(plan.delete) == ["shop-old1", "shop-old2"]


def test_history_never_deletes_the_current_job_even_at_zero():
    name = f"shop-{CHASH}"
    spec = {**SPEC, "historyLimit": 0}
    chash = content_hash(DatabaseMigrationSpec.model_validate(spec))
    assert chash == CHASH
    plan = run(body(spec=spec), jobs=[job(name=name, chash=CHASH, state="complete")])
    assert plan.delete == []


def test_invalid_spec_stalls():
    plan = run(body(spec={"image": "app:1"}))
    assert plan.create is None and plan.status["phase"] == "Failed"
    assert cond(plan, "Stalled")["reason"] == "InvalidSpec"


def test_a_job_of_the_previous_spec_that_succeeds_later_still_counts_as_migrated():
    old = f"shop-{CHASH}"
    running = run(body(), jobs=[job(name=old, chash=CHASH)]).status
    new_spec = {**SPEC, "image": "app:2"}
    waiting = run(
        body(spec=new_spec, status=running, generation=2), jobs=[job(name=old, chash=CHASH)]
    )
    assert waiting.create is None and "migratedImage" not in waiting.status
    done = [job(name=old, chash=CHASH, state="complete", image="app:1")]
    plan = run(body(spec=new_spec, status=waiting.status, generation=2), jobs=done)
    assert plan.create is not None
    assert plan.status["migratedImage"] == "app:1"


def test_rollback_to_an_earlier_content_runs_it_again():
    # v1's Job finished, then a newer content's Job ran: going back to v1 must not adopt
    # v1's old result, because the database has moved on since.
    old = job(name=f"shop-{CHASH}", chash=CHASH, state="complete", created=T0)
    newer = job(name="shop-v2hash", chash="v2hash", state="complete", created=T1, image="app:2")
    plan = run(body(status={"phase": "Succeeded", "image": "app:2"}), jobs=[old, newer])
    assert plan.create["metadata"]["name"] == f"shop-{CHASH}-2"
    assert plan.status["phase"] == "Running" and plan.status["image"] == "app:1"


def test_rollback_waits_while_the_newer_job_still_runs():
    old = job(name=f"shop-{CHASH}", chash=CHASH, state="complete", created=T0)
    newer = job(name="shop-v2hash", chash="v2hash", state="active", created=T1, image="app:2")
    plan = run(body(), jobs=[old, newer])
    assert plan.create is None
    assert cond(plan, "Ready")["reason"] == "WaitingForPreviousJob"


def test_the_rerun_after_a_rollback_is_adopted_not_repeated():
    old = job(name=f"shop-{CHASH}", chash=CHASH, state="complete", created=T0)
    newer = job(name="shop-v2hash", chash="v2hash", state="complete", created=T1, image="app:2")
    rerun = job(name=f"shop-{CHASH}-2", chash=CHASH, attempt=2, created="2026-01-01T00:00:09Z")
    plan = run(body(), jobs=[old, newer, rerun], pods=[pod(f"shop-{CHASH}-2")])
    assert plan.create is None and plan.status["jobName"] == f"shop-{CHASH}-2"
