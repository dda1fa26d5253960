"""Classifying what env.py or a revision raised, and the environment hand-off."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import samples
from migrategate.runner import scripts, upgrade
from migrategate.runner.errors import (
    BadInput,
    LockTimedOut,
    MigrationFailed,
    Transient,
)
from migrategate.runner.incontext import Expected, InContext, Timeouts
from migrategate.runner.phases import resolve_goal
from sqlalchemy import exc

FAILING = samples.revision_source(
    "0003b", "0002", 'raise ZeroDivisionError("division by zero in 0003b")'
)


class FakeDriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = samples.materialize("seed004_ini_url", "v1", tmp_path / "app")
    (samples.versions_dir(project) / "0003b_fail.py").write_text(FAILING)
    monkeypatch.chdir(project)
    return scripts.load_scripts(scripts.load_config("alembic.ini", "alembic"))


def raised_in_revision(script) -> BaseException:
    path = samples.versions_dir(Path.cwd()) / "0003b_fail.py"
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    try:
        namespace["upgrade"]()
    except ZeroDivisionError as error:
        return error
    raise AssertionError("the revision did not raise")


def test_revision_failure_names_the_revision(script) -> None:
    failure = upgrade.classify_failure(raised_in_revision(script), script)
    assert isinstance(failure, MigrationFailed)
    assert failure.failed_revision == "0003b"
    assert failure.message.startswith("revision 0003b failed: ZeroDivisionError")


def test_import_error_in_env_py_is_bad_input(script) -> None:
    failure = upgrade.classify_failure(ModuleNotFoundError("No module named 'app'"), script)
    assert isinstance(failure, BadInput) and "run from the project directory" in failure.message


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (FakeDriverError("connection refused"), Transient),
        (FakeDriverError("password authentication failed for user x", "28P01"), BadInput),
        (
            FakeDriverError("terminating connection due to administrator command", "57P01"),
            Transient,
        ),
    ],
)
def test_operational_errors(script, orig: Exception, expected: type) -> None:
    error = exc.OperationalError("SELECT 1", {}, orig)
    assert isinstance(upgrade.classify_failure(error, script), expected)


def test_invalidated_connection_is_transient(script) -> None:
    error = exc.DBAPIError(
        "SELECT 1", {}, FakeDriverError("server closed"), connection_invalidated=True
    )
    assert isinstance(upgrade.classify_failure(error, script), Transient)


@pytest.mark.parametrize(
    ("raised", "says"),
    [
        (TimeoutError(), "timed out connecting"),  # asyncpg's connect timeout, bare
        (ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
        (OSError(113, "No route to host"), "No route to host"),
    ],
)
def test_env_py_connect_errors_raised_bare_are_transient(script, raised, says) -> None:
    failure = upgrade.classify_failure(raised, script)
    assert isinstance(failure, Transient), failure
    assert (
        failure.message.startswith("env.py could not reach the database")
        and says in failure.message
    )


def test_a_file_env_py_cannot_open_is_not_a_network_error(script) -> None:
    failure = upgrade.classify_failure(FileNotFoundError(2, "No such file", "app.ini"), script)
    assert isinstance(failure, MigrationFailed), failure


def test_other_env_py_errors_are_migration_failures(script) -> None:
    failure = upgrade.classify_failure(KeyError("sqlalchemy.url"), script)
    assert isinstance(failure, MigrationFailed) and failure.failed_revision is None
    assert "env.py failed before any revision ran" in failure.message


def test_exported_sets_then_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL_SYNC", "before")
    with upgrade.exported("DATABASE_URL_SYNC", "during"):
        assert os.environ["DATABASE_URL_SYNC"] == "during"
    assert os.environ["DATABASE_URL_SYNC"] == "before"
    monkeypatch.delenv("DATABASE_URL_SYNC")
    with upgrade.exported("DATABASE_URL_SYNC", "during"):
        pass
    assert "DATABASE_URL_SYNC" not in os.environ


def test_lock_timeout_is_retryable_and_keeps_the_statement(script) -> None:
    orig = FakeDriverError("canceling statement due to lock timeout", "55P03")
    error = exc.OperationalError("ALTER TABLE items ADD COLUMN x int", {}, orig)
    failure = upgrade.classify_failure(error, script)
    assert isinstance(failure, LockTimedOut) and isinstance(failure, Transient)
    assert failure.statement == "ALTER TABLE items ADD COLUMN x int"
    assert failure.message == "env.py could not get a lock within lock_timeout"


def test_permission_denied_on_the_version_table_names_role_table_and_grant(script) -> None:
    class Context:  # what env.py's MigrationContext tells: its table and connection
        version_table, version_table_schema = "versions", "meta"
        connection = SimpleNamespace(engine=SimpleNamespace(url=SimpleNamespace(username="owner")))

    orig = FakeDriverError("permission denied for table versions", "42501")
    error = exc.ProgrammingError("SELECT version_num FROM meta.versions", {}, orig)
    failure = upgrade.classify_failure(error, script, Context())
    assert isinstance(failure, BadInput)
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON "meta"."versions" TO owner' in failure.message
    assert "\n" not in failure.message


def test_timeouts_are_given_to_postgres_in_milliseconds_and_zero_leaves_them() -> None:
    assert Timeouts(5, 0).settings() == {"lock_timeout": "5000ms"}
    assert Timeouts(0.25, 60).settings() == {
        "lock_timeout": "250ms",
        "statement_timeout": "60000ms",
    }
    assert Timeouts(0, 0).settings() == {}


def test_alembic_upgrade_reuses_the_loaded_scripts(script, monkeypatch: pytest.MonkeyPatch) -> None:
    """env.py runs against the ScriptDirectory we pass (no second load), with our ``fn``."""
    ran: list[object] = []
    monkeypatch.setattr(type(script), "run_env", lambda self: ran.append(self))
    cfg = scripts.load_config("alembic.ini", "alembic")
    expected = Expected(script, resolve_goal(script, "0003"), "succeed", Timeouts(), None)
    upgrade.alembic_upgrade(cfg, script, InContext(expected))
    assert ran == [script]
