"""Spec and status models: defaults, aliases and validation."""

import pytest
from migrategate.api.models import (
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
    duration_seconds,
)
from pydantic import ValidationError

MINIMAL = {"image": "app:1", "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}}}


def test_minimal_spec_gets_documented_defaults():
    spec = DatabaseMigrationSpec.model_validate(MINIMAL)
    assert spec.alembic.config == "alembic.ini"
    assert spec.alembic.target == "head"
    assert spec.runner.mode == "inject"
    assert spec.runner.driver == "auto"
    assert spec.runner.lock_timeout_seconds == 300
    assert (spec.runner.lock_timeout, spec.runner.statement_timeout) == ("5s", "0")
    assert spec.runner.lock_retries == 5
    assert spec.retry.limit == 3
    assert spec.history_limit == 3
    assert spec.suspend is False
    assert spec.database_url.secret_key_ref.name == "db"


def test_round_trip_uses_camel_case_aliases():
    full = {
        **MINIMAL,
        "imagePullPolicy": "Never",
        "alembic": {"workingDir": "/app", "xArgs": ["tenant=a"]},
        "runner": {"mode": "installed", "ifAhead": "fail", "lockTimeoutSeconds": 5},
        "job": {"activeDeadlineSeconds": 60, "nodeSelector": {"k": "v"}},
        "retry": {"limit": 0, "backoffSeconds": 1, "maxBackoffSeconds": 2},
    }
    dumped = DatabaseMigrationSpec.model_validate(full).model_dump(by_alias=True, exclude_none=True)
    assert dumped["alembic"]["workingDir"] == "/app"
    assert dumped["runner"]["ifAhead"] == "fail"
    assert dumped["job"]["activeDeadlineSeconds"] == 60
    assert dumped["databaseURL"]["secretKeyRef"] == {"name": "db", "key": "url"}


@pytest.mark.parametrize(
    "change",
    [
        {"image": ""},
        {"image": "has space"},
        {"databaseURL": {"secretKeyRef": {"name": "db"}}},
        {"runner": {"mode": "sidecar"}},
        {"runner": {"lockTimeoutSeconds": 0}},
        {"runner": {"lockTimeout": "5"}},  # no unit: seconds or minutes?
        {"runner": {"lockTimeout": "1h"}},
        {"runner": {"statementTimeout": "-1s"}},
        {"runner": {"lockRetries": -1}},
        {"alembic": {"xArgs": ["novalue"]}},
        {"retry": {"backoffSeconds": 10, "maxBackoffSeconds": 5}},
        {"historyLimit": -1},
        {"imagePullPolicy": "Sometimes"},
        {"gate": {"deployments": ["Not_A_Name"]}},
    ],
)
def test_invalid_specs_are_rejected(change):
    with pytest.raises(ValidationError):
        DatabaseMigrationSpec.model_validate({**MINIMAL, **change})


def test_status_reads_what_the_operator_writes():
    status = DatabaseMigrationStatus.model_validate(
        {
            "phase": "Succeeded",
            "observedGeneration": 2,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Succeeded", "observedGeneration": 2}
            ],
            "currentRevision": ["b2"],
            "migratedImage": "app:2",
        }
    )
    assert status.phase == "Succeeded"
    assert status.conditions[0].observed_generation == 2
    assert status.current_revision == ["b2"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("500ms", 0.5), ("5s", 5.0), ("1.5s", 1.5), ("2m", 120.0)]
)
def test_durations_in_seconds(text: str, seconds: float) -> None:
    assert DatabaseMigrationSpec.model_validate({**MINIMAL, "runner": {"lockTimeout": text}})
    assert duration_seconds(text) == seconds
