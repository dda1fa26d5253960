"""Decisions made inside env.py's own MigrationContext, and permission errors, on a real server."""

from __future__ import annotations

import time
from pathlib import Path

import pgserver
import pytest
import runnerkit as kit
import samples
from migrategate.runner.contract import ErrorClass, ExitCode, Outcome, ResultKey

pytestmark = pytest.mark.postgres

STYLE = "seed004_ini_url"
SCHEMA, TABLE = "meta", "mg_versions"
READER = "mg_reader"  # a role that may connect, but not read the version table

# env.py as many real projects write it: the version table and its schema come from the
# environment, and it may connect with settings of its own (another role, or database).
OWN_ENV_PY = """
import os

from alembic import context
from sqlalchemy import create_engine, pool

url = os.environ.get("MIGRATION_OWNER_URL") or os.environ["DATABASE_URL_SYNC"]
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        version_table=os.environ.get("VERSION_TABLE", "alembic_version"),
        version_table_schema=os.environ.get("VERSION_SCHEMA") or None,
    )
    with context.begin_transaction():
        context.run_migrations()
"""


def own_app(version: str, tmp_path: Path) -> Path:
    app = samples.materialize(STYLE, version, tmp_path / f"app-{version}")
    (app / "alembic" / "env.py").write_text(OWN_ENV_PY)
    return app


def versions_in(pg: pgserver.PgServer, db: str, schema: str, table: str) -> list[str]:
    rows = pg.execute(f"SELECT version_num FROM {schema}.{table}", db)
    return sorted(row[0] for row in rows)


@pytest.fixture
def env(pg_server: pgserver.PgServer, pg_database: str) -> dict[str, str]:
    """env.py's version table is meta.mg_versions, named only through the environment."""
    pg_server.execute(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {pgserver.APP_USER}", pg_database)
    return {
        **kit.base_env(pg_server.url(pg_database)),
        "VERSION_TABLE": TABLE,
        "VERSION_SCHEMA": SCHEMA,
    }


def test_env_var_version_table_no_op(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    first = kit.migrate_ok(own_app("v1", tmp_path), env)
    assert first.result[ResultKey.APPLIED_REVISIONS] == ["0001", "0002", "0003"]
    again = kit.migrate_ok(own_app("v1", tmp_path), env)
    assert again.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value
    assert again.result[ResultKey.APPLIED_REVISIONS] == []
    assert (
        again.result[ResultKey.FROM_REVISIONS] == again.result[ResultKey.TO_REVISIONS] == ["0003"]
    )
    assert "nothing to do" in again.stdout
    assert versions_in(pg_server, pg_database, SCHEMA, TABLE) == ["0003"]
    # the versions are in meta.mg_versions: no public.alembic_version anywhere
    kit.assert_left_at(pg_server, pg_database, [], first, again)


def test_env_var_version_table_ahead(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    """An older image on a newer database: ahead, not "Can't locate revision" (exit 4)."""
    _, strict = kit.ahead_runs(own_app("v2", tmp_path), own_app("v1", tmp_path), env)
    assert "--if-ahead succeed" in strict.stdout
    assert len(strict.stdout.strip().splitlines()) == 1
    assert versions_in(pg_server, pg_database, SCHEMA, TABLE) == ["0004"]


def test_env_var_version_table_failing_revision(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    kit.failed_upgrade(own_app("v1", tmp_path), own_app("v2-broken", tmp_path), env)
    assert versions_in(pg_server, pg_database, SCHEMA, TABLE) == ["0003"]


@pytest.fixture
def reader(pg_server: pgserver.PgServer, pg_database: str) -> str:
    """DATABASE_URL of a role without SELECT on the version table."""
    pg_server.ensure_role(READER, pgserver.APP_PASSWORD)
    return pg_server.url(pg_database, user=READER)


@pytest.mark.parametrize("asyncpg_only", [False, True])
def test_a_role_without_select_on_the_version_table_is_told_what_to_grant(
    asyncpg_only: bool, pg_server: pgserver.PgServer, pg_database: str, reader: str, tmp_path: Path
) -> None:
    app = samples.materialize(STYLE, "v1", tmp_path / "app")
    owner_env = kit.base_env(pg_server.url(pg_database))
    kit.migrate_ok(app, owner_env)
    reader_env = kit.base_env(reader)
    if asyncpg_only:
        reader_env = kit.asyncpg_only(reader_env, tmp_path)
    started = time.monotonic()
    waited = kit.run(app, reader_env, "wait", "--timeout", "120")
    assert time.monotonic() - started < 30  # fails fast, does not spin until --timeout
    checked = kit.run(app, reader_env, "check")
    for done in (waited, checked):
        assert done.code == ExitCode.BAD_INPUT, done.output
        assert done.result[ResultKey.ERROR_CLASS] == ErrorClass.BAD_INPUT.value
        assert len(done.stdout.strip().splitlines()) == 1 and "Traceback" not in done.output
        assert f'role {READER} may not read the version table "public"."alembic_version"' in (
            done.stdout
        )
        assert f'GRANT SELECT ON "public"."alembic_version" TO {READER}' in done.stdout
        assert "base" not in done.stdout
    kit.assert_no_password(waited, checked)


def test_env_py_with_its_own_role_migrates_what_database_url_cannot_read(
    pg_server: pgserver.PgServer, pg_database: str, reader: str, tmp_path: Path
) -> None:
    """The issue's case: once "at base ... exit 5"; now judged from env.py's own context."""
    owner = pg_server.url(pg_database, driver="postgresql+psycopg")
    env = {**kit.base_env(reader), "MIGRATION_OWNER_URL": owner}
    kit.migrate_ok(own_app("v1", tmp_path), env)
    done = kit.migrate_ok(own_app("v2", tmp_path), env)
    assert done.result[ResultKey.OUTCOME] == Outcome.SUCCEEDED.value
    assert done.result[ResultKey.FROM_REVISIONS] == ["0003"]
    assert done.result[ResultKey.TO_REVISIONS] == ["0004"]
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0004"]
    assert any("verified inside env.py's transaction only" in w for w in done.result["warnings"])
    kit.assert_left_at(pg_server, pg_database, ["0004"], done)


def test_env_py_whose_role_may_not_use_the_version_table(
    pg_server: pgserver.PgServer, pg_database: str, reader: str, tmp_path: Path
) -> None:
    app = own_app("v2", tmp_path)
    owner_env = kit.base_env(pg_server.url(pg_database))
    kit.migrate_ok(samples.materialize(STYLE, "v1", tmp_path / "v1"), owner_env)
    env = {**owner_env, "MIGRATION_OWNER_URL": reader.replace("+asyncpg", "+psycopg")}
    done = kit.run(app, env, "migrate")
    assert done.code == ExitCode.BAD_INPUT, done.output
    assert f'{READER} may not use the version table "alembic_version"' in done.stdout
    assert f'GRANT SELECT, INSERT, UPDATE, DELETE ON "alembic_version" TO {READER}' in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1
    kit.assert_no_password(done)


def test_env_py_on_another_database_is_refused(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    other = pg_server.create_database()
    try:
        env = {
            **kit.base_env(pg_server.url(pg_database)),
            "MIGRATION_OWNER_URL": pg_server.url(other, driver="postgresql+psycopg"),
        }
        done = kit.run(own_app("v1", tmp_path), env, "migrate")
        assert done.code == ExitCode.BAD_INPUT, done.output
        assert f"env.py migrates database '{other}' but DATABASE_URL names '{pg_database}'" in (
            done.stdout
        )
        assert pg_server.execute("SELECT to_regclass('public.items')", other) == [(None,)]
        kit.assert_no_password(done)
    finally:
        pg_server.drop_database(other)


def test_env_py_reaching_the_server_another_way_gets_a_warning(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    """DATABASE_URL over TCP, env.py over the unix socket: the runner cannot prove it is one
    server, so it says so (the same database name: not an error)."""
    socket_url = (
        f"postgresql+psycopg://{pgserver.APP_USER}@/{pg_database}"
        f"?host={pg_server.socket_dir}&port={pg_server.port}"
    )
    env = {**kit.base_env(pg_server.url(pg_database)), "MIGRATION_OWNER_URL": socket_url}
    done = kit.migrate_ok(own_app("v1", tmp_path), env)
    warning = (
        f"env.py reached the server at local socket, DATABASE_URL at 127.0.0.1:{pg_server.port}"
    )
    assert any(warning in w for w in done.result[ResultKey.WARNINGS]), done.result
    kit.assert_left_at(pg_server, pg_database, ["0003"], done)
