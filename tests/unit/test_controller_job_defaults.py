"""The operator's jobDefaults (MIGRATEGATE_JOB_DEFAULTS) under each DatabaseMigration's spec.job."""

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller import jobs, migration_decision, naming
from migrategate.controller.settings import Settings, job_defaults

SPEC = {
    "image": "app:1",
    "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
    "job": {"nodeSelector": {"pool": "migrations"}, "labels": {"team": "shop"}},
}
DEFAULTS = {
    "nodeSelector": {"pool": "default", "zone": "a"},
    "labels": {"cost-center": "42"},
    "tolerations": [{"key": "batch", "operator": "Exists"}],
    "activeDeadlineSeconds": 900,
}


def defaults():
    return job_defaults(Settings.from_env({"MIGRATEGATE_JOB_DEFAULTS": json.dumps(DEFAULTS)}))


def test_the_spec_wins_key_by_key_and_defaults_fill_the_rest():
    spec = jobs.with_job_defaults(DatabaseMigrationSpec.model_validate(SPEC), defaults())
    assert spec.job.node_selector == {"pool": "migrations", "zone": "a"}
    assert spec.job.labels == {"cost-center": "42", "team": "shop"}
    assert spec.job.tolerations == DEFAULTS["tolerations"]
    assert spec.job.active_deadline_seconds == 900


def test_defaults_reach_the_job_but_not_the_content_hash():
    body = {
        "metadata": {"name": "shop", "namespace": "ns1", "uid": "u1", "generation": 1},
        "spec": SPEC,
    }
    cfg = migration_decision.Config(runner_image="migrategate:test", job_defaults=defaults())
    plan = migration_decision.decide(
        migration_decision.Observed(body, [], [], datetime.now(UTC)), cfg
    )
    # An administrator changing jobDefaults must not rerun every migration.
    own_hash = naming.content_hash(DatabaseMigrationSpec.model_validate(SPEC))
    assert plan.create["metadata"]["name"] == f"shop-{own_hash}"
    pod = plan.create["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "migrations", "zone": "a"}
    assert pod["tolerations"] == DEFAULTS["tolerations"]
    assert plan.create["spec"]["activeDeadlineSeconds"] == 900


def test_no_defaults_leave_the_spec_alone():
    spec = DatabaseMigrationSpec.model_validate(SPEC)
    assert jobs.with_job_defaults(spec, job_defaults(Settings.from_env({}))) is spec


@pytest.mark.parametrize("raw", ["{not json", '{"activeDeadlineSeconds": 0}'])
def test_a_bad_value_names_the_variable(raw):
    with pytest.raises(ValueError, match="MIGRATEGATE_JOB_DEFAULTS"):
        job_defaults(Settings.from_env({"MIGRATEGATE_JOB_DEFAULTS": raw}))


def test_the_operator_refuses_to_start_with_a_bad_value():
    done = subprocess.run(
        [sys.executable, "-m", "migrategate", "operator"],
        env={"MIGRATEGATE_JOB_DEFAULTS": "[1, 2]", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: MIGRATEGATE_JOB_DEFAULTS")
    assert "Traceback" not in done.stderr
