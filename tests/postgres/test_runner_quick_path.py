"""The quick path (runner/quick.py) against a real server: a database at the target ends the
run without Alembic or SQLAlchemy and with the full path's result; any other database goes on
to the full path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pgserver
import pytest
import runnerkit as kit
import samples
from migrategate.runner import quick
from migrategate.runner.contract import Outcome, ResultKey
from migrategate.runner.settings import Settings

pytestmark = pytest.mark.postgres

HEAVY = ("alembic", "sqlalchemy")


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs from run to run."""
    return {k: v for k, v in result.items() if k != ResultKey.DURATION_SECONDS}


@pytest.mark.parametrize("style", sorted(samples.STYLES))
def test_at_the_target_neither_alembic_nor_sqlalchemy_is_imported(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path, style: str
) -> None:
    app = samples.materialize(style, "v2", tmp_path / "app")
    env = kit.base_env(pg_server.url(pg_database))
    kit.migrate_ok(app, env)
    # A query parameter sends the run down the full path (asyncpg's timeout: libpq's differs).
    full = kit.migrate_ok(app, {**env, "DATABASE_URL": env["DATABASE_URL"] + "?timeout=10"})
    light = kit.without_modules(env, tmp_path / "no-alembic", HEAVY)
    done = kit.migrate_ok(app, light)
    assert done.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value
    assert comparable(done.result) == comparable(full.result)
    assert done.stdout == full.stdout == "database already at the target; env.py not run\n"
    # As the operator's Jobs run it: --phase expand, which is everything without a contract branch.
    full_expand = kit.migrate_ok(
        app, {**env, "DATABASE_URL": env["DATABASE_URL"] + "?timeout=10"}, "--phase", "expand"
    )
    expand = kit.migrate_ok(app, light, "--phase", "expand")
    assert comparable(expand.result) == comparable(full_expand.result)
    waited = kit.run(app, light, "wait")
    assert waited.code == 0, waited.output
    assert waited.stdout == f"database at the target {samples.head_of('v2')}\n"
    kit.assert_left_at(pg_server, pg_database, [samples.head_of("v2")], done, waited)


def test_behind_or_ahead_it_leaves_the_run_to_the_full_path(
    pg_server: pgserver.PgServer,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = kit.base_env(pg_server.url(pg_database))
    v1 = samples.materialize("seed004_ini_url", "v1", tmp_path / "v1")
    v2 = samples.materialize("seed004_ini_url", "v2", tmp_path / "v2")
    kit.migrate_ok(v1, env)
    monkeypatch.chdir(v2)
    assert quick.at_target("migrate", Settings(), env) is None  # behind: 0003 of 0004
    kit.migrate_ok(v2, env)
    assert quick.at_target("migrate", Settings(), env) is not None
    monkeypatch.chdir(v1)
    assert quick.at_target("migrate", Settings(), env) is None  # ahead: 0004 of 0003
    # Without Alembic the full path cannot run: the quick path did not pretend otherwise.
    light = kit.without_modules(env, tmp_path / "no-alembic", HEAVY)
    refused = kit.run(v1, light, "migrate")
    assert refused.code != 0 and "blocked in this test environment" in refused.output
    assert kit.versions(pg_server, pg_database) == [samples.head_of("v2")]


def test_a_database_that_cannot_be_reached_is_reported_by_the_full_path(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = samples.materialize("seed004_ini_url", "v1", tmp_path / "app")
    wrong = pg_server.url(pg_database, password=pgserver.SPECIAL_PASSWORD)
    denied = kit.run(app, kit.base_env(wrong), "migrate")
    assert denied.code == 2, denied.output
    assert "check the user, password and database name" in denied.stdout
    kit.assert_no_password(denied)
