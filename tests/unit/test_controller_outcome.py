"""The outcome classifier."""

import pytest
from controller_objects import job, pod, result
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.outcome import Kind, classify


def verdict(j, *pods):
    return classify(job_facts(j), [pod_facts(p) for p in pods])


def test_complete_job_succeeds_with_the_runner_result():
    v = verdict(job(state="complete"), pod(exit_code=0, message=result(0), phase="Succeeded"))
    assert v.kind is Kind.SUCCEEDED
    assert v.result["appliedRevisions"] == ["b2"]
    assert v.finished_at == "2026-01-01T00:00:05Z"


def test_running_job_is_running():
    assert verdict(job(), pod()).kind is Kind.RUNNING
    assert verdict(job()).kind is Kind.RUNNING


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (3, Kind.TRANSIENT, "Transient"),
        (2, Kind.PERMANENT, "BadInput"),
        (4, Kind.PERMANENT, "MigrationFailed"),
        (5, Kind.PERMANENT, "VerificationFailed"),
        (143, Kind.TRANSIENT, "Terminated"),
        (1, Kind.PERMANENT, "ExitCode1"),
    ],
)
def test_exit_codes(code, kind, reason):
    v = verdict(job(state="failed"), pod(exit_code=code, message=result(code, message="boom")))
    assert (v.kind, v.reason) == (kind, reason)
    assert v.message == "boom"


def test_fallback_to_logs_text_is_the_message():
    v = verdict(job(state="failed"), pod(exit_code=4, message="Traceback ... boom"))
    assert v.kind is Kind.PERMANENT and v.result is None
    assert v.message == "Traceback ... boom"


def test_deadline_and_eviction_are_transient():
    assert verdict(job(state="failed", reason="DeadlineExceeded"), pod()).kind is Kind.TRANSIENT
    evicted = pod(reason="Evicted", phase="Failed")
    assert verdict(job(state="failed"), evicted).reason == "Evicted"


@pytest.mark.parametrize(
    "reason",
    ["CreateContainerConfigError", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"],
)
def test_a_pod_that_cannot_start_is_permanent_while_the_job_still_runs(reason):
    v = verdict(job(), pod(waiting=(reason, 'secret "db" not found')))
    assert (v.kind, v.reason) == (Kind.PERMANENT, reason)
    assert 'secret "db"' in v.message


def test_transient_waiting_is_still_running():
    assert verdict(job(), pod(waiting=("ContainerCreating", ""))).kind is Kind.RUNNING


def test_failed_runner_install_is_permanent():
    v = verdict(job(state="failed"), pod(init_exit=1, phase="Failed"))
    assert (v.kind, v.reason) == (Kind.PERMANENT, "RunnerInstallFailed")


def test_failed_job_without_pod_is_transient():
    assert verdict(job(state="failed")).kind is Kind.TRANSIENT


def test_latest_pod_counts():
    old = pod(exit_code=3, message=result(3), created="2026-01-01T00:00:00Z")
    new = pod(exit_code=4, message=result(4), created="2026-01-01T00:00:09Z")
    assert verdict(job(state="failed"), old, new).reason == "MigrationFailed"
