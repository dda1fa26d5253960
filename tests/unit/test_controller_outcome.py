"""The outcome classifier."""

from datetime import UTC, datetime, timedelta

import pytest
from controller_objects import job, pod, result
from migrategate.controller.facts import job_facts, pod_facts
from migrategate.controller.outcome import Kind, classify, config_error_hint

NOW = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)  # the objects' T0 + 6 s


def verdict(j, *pods, now=NOW, grace=60.0):
    return classify(job_facts(j), [pod_facts(p) for p in pods], now, grace)


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
    "reason", ["CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"]
)
def test_a_pod_that_cannot_start_is_permanent_at_once_while_the_job_still_runs(reason):
    v = verdict(job(), pod(waiting=(reason, 'secret "db" not found')))
    assert (v.kind, v.reason) == (Kind.PERMANENT, reason)
    assert 'secret "db"' in v.message


def test_create_container_config_error_keeps_the_kubelets_own_message():
    text = 'container has runAsNonRoot and image will run as root (pod: "p", container: migrate)'
    v = verdict(job(), pod(waiting=("CreateContainerConfigError", text)))
    assert (v.kind, v.reason, v.message) == (Kind.PERMANENT, "CreateContainerConfigError", text)


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_a_failing_pull_is_running_within_the_grace_period_then_permanent(reason):
    text = 'failed to pull image "app:1": 503 Service Unavailable'
    stuck = pod(waiting=(reason, text))  # created at T0, no conditions: measured from T0
    early = verdict(job(), stuck, now=NOW)
    assert (early.kind, early.reason, early.message) == (Kind.RUNNING, reason, text)
    assert early.recheck_after == pytest.approx(54.0)  # 60 s from T0, now T0 + 6 s
    late = verdict(job(), stuck, now=NOW + timedelta(seconds=54))
    assert (late.kind, late.reason, late.message) == (Kind.PERMANENT, reason, text)
    assert late.recheck_after is None
    assert verdict(job(), stuck, grace=0).kind is Kind.PERMANENT


def test_the_pull_grace_starts_when_the_pull_could_start():
    text = "back-off pulling image"
    scheduled = ("PodScheduled", "2026-01-01T00:01:00Z", None, None)
    initialized = ("Initialized", "2026-01-01T00:02:00Z", None, None)
    at = datetime(2026, 1, 1, 0, 2, 30, tzinfo=UTC)
    # The main container's pull waits for the init containers: 30 s ago.
    main = pod(waiting=("ImagePullBackOff", text), conditions=[scheduled, initialized])
    assert verdict(job(), main, now=at).recheck_after == pytest.approx(30.0)
    # The init container's pull starts once the pod is scheduled: 90 s ago.
    init = pod(init_waiting=("ImagePullBackOff", text), conditions=[scheduled])
    v = verdict(job(), init, now=at)
    assert (v.kind, v.reason) == (Kind.PERMANENT, "ImagePullBackOff")


def test_a_job_that_failed_during_a_pull_within_the_grace_is_transient():
    v = verdict(job(state="failed"), pod(waiting=("ErrImagePull", "timeout"), phase="Failed"))
    assert (v.kind, v.reason) == (Kind.TRANSIENT, "ErrImagePull")


def test_the_secret_is_named_only_for_a_missing_databaseurl_secret_or_key():
    ours = " (databaseURL.secretKeyRef: Secret 'db', key 'url')"
    assert config_error_hint('secret "db" not found', "db", "url") == ours
    assert config_error_hint("couldn't find key url in Secret ns1/db", "db", "url") == ours
    other = config_error_hint('secret "extra" not found', "db", "url")
    assert "job.env" in other and "'db'" not in other
    assert (
        config_error_hint("container has runAsNonRoot and image will run as root", "db", "u") == ""
    )
    assert config_error_hint('configmap "cfg" not found', "db", "url") == ""


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


# ----------------------------------------------------------------------------- disruptions
# A drained, evicted or deleted pod: the kubelet sends SIGTERM (the runner stops and exits 143)
# and, after the grace period, SIGKILL (exit 137, reason Error: an older runner, as PID 1 with no
# SIGTERM handler, never saw the SIGTERM).


@pytest.mark.parametrize("code", [143, 137])
def test_killed_by_a_signal_is_transient_whatever_the_reason_says(code):
    v = verdict(job(state="failed"), pod(exit_code=code, message="", terminated_reason="Error"))
    assert v.kind is Kind.TRANSIENT, v


def test_oom_stays_permanent():
    v = verdict(job(state="failed"), pod(exit_code=137, terminated_reason="OOMKilled"))
    assert (v.kind, v.reason) == (Kind.PERMANENT, "OOMKilled")


@pytest.mark.parametrize("code", [None, 1, 137, 143])
def test_a_disruption_target_is_transient(code):
    target = (
        "DisruptionTarget",
        "2026-01-01T00:00:04Z",
        "EvictionByEvictionAPI",
        "Eviction API: evicting",
    )
    drained = pod(exit_code=code, conditions=[target], phase="Failed")
    v = verdict(job(state="failed"), drained)
    assert (v.kind, v.reason) == (Kind.TRANSIENT, "DisruptionTarget")
    assert "EvictionByEvictionAPI" in v.message


@pytest.mark.parametrize("reason", ["Evicted", "Terminated", "Shutdown", "NodeShutdown"])
def test_pods_the_kubelet_ended_are_transient(reason):
    ended = pod(exit_code=137, reason=reason, phase="Failed")
    assert verdict(job(state="failed"), ended).reason == reason
    assert verdict(job(state="failed"), ended).kind is Kind.TRANSIENT


@pytest.mark.parametrize("code", [None, 1])
def test_a_deleted_pod_is_transient(code):
    # The Job fails as soon as its pod is terminating, maybe before the container stops.
    deleted = pod(exit_code=code, deleted_at="2026-01-01T00:00:03Z")
    v = verdict(job(state="failed"), deleted)
    assert (v.kind, v.reason) == (Kind.TRANSIENT, "PodDeleted")


def test_the_runner_stopped_by_sigterm_names_the_disruption_with_its_own_message():
    stopped = result(143, errorClass="Terminated", message="stopped by SIGTERM")
    deleted = pod(exit_code=143, message=stopped, deleted_at="2026-01-01T00:00:03Z")
    v = verdict(job(state="failed"), deleted)
    assert (v.kind, v.reason, v.message) == (Kind.TRANSIENT, "PodDeleted", "stopped by SIGTERM")
    # Nothing says who sent it (the pod is already gone from the list): still worth a retry.
    v = verdict(job(state="failed"), pod(exit_code=143, message=stopped))
    assert (v.kind, v.reason, v.message) == (Kind.TRANSIENT, "Terminated", "stopped by SIGTERM")


# A deleted or evicted pod is gone by the time its Job fails: the Job's pod failure policy says
# why, in the Job controller's words.
EXIT_RULE = (
    "Container migrate for pod ns/p failed with exit code {} matching FailJob rule at index 1"
)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0",
            "DisruptionTarget",
        ),
        (EXIT_RULE.format(143), "Terminated"),
        (EXIT_RULE.format(137), "Killed"),
        ("a wording of a later Kubernetes", "PodFailurePolicy"),
    ],
)
def test_a_job_failed_by_its_pod_failure_policy_is_transient_without_its_pod(message, reason):
    failed = job(state="failed", reason="PodFailurePolicy", message=message)
    v = verdict(failed)
    assert (v.kind, v.reason, v.message) == (Kind.TRANSIENT, reason, message)


def test_the_runners_own_verdict_stands_on_a_disrupted_pod():
    target = ("DisruptionTarget", "2026-01-01T00:00:04Z", "EvictionByEvictionAPI", "evicting")
    failed = pod(exit_code=4, message=result(4, message="boom"), conditions=[target])
    assert verdict(job(state="failed"), failed).reason == "MigrationFailed"


def test_a_disrupted_runner_install_is_transient():
    deleted = pod(init_exit=137, phase="Failed", deleted_at="2026-01-01T00:00:03Z")
    assert verdict(job(state="failed"), deleted).kind is Kind.TRANSIENT
