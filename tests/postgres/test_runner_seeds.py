"""Every seed env.py style, upgraded by the real CLI against a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pgserver
import pytest
import runnerkit as kit
import samples
from migrategate.runner.contract import Outcome, ResultKey

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("style", list(samples.STYLES))
def test_seed_style_upgrades_from_empty_then_takes_the_fast_path(
    style: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = samples.materialize(style, "v1", tmp_path / "app")
    marker = tmp_path / "env-py-ran"
    env = kit.base_env(pg_server.url(pg_database), marker)

    first = kit.migrate_ok(app, env)
    assert first.result[ResultKey.OUTCOME] == Outcome.SUCCEEDED.value
    assert first.result[ResultKey.APPLIED_REVISIONS] == ["0001", "0002", "0003"]
    assert first.result[ResultKey.FROM_REVISIONS] == []
    assert first.result[ResultKey.TO_REVISIONS] == ["0003"]
    assert kit.versions(pg_server, pg_database) == ["0003"]
    slugs = pg_server.execute("SELECT slug FROM items ORDER BY id", pg_database)
    assert slugs == [("first-item",), ("second-item",)]  # the data migration ran
    assert kit.marker_lines(marker) == 1

    second = kit.migrate_ok(app, env)
    assert second.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value
    assert second.result[ResultKey.APPLIED_REVISIONS] == []
    assert kit.marker_lines(marker) == 1  # fast path: env.py (and so the app) was not imported
    kit.assert_no_password(first, second)


@pytest.mark.parametrize(
    "style", ["seed000_env_sync_url", "seed002_async_engine_wrap", "seed004_ini_url"]
)
def test_password_needing_percent_encoding(
    style: str, pg_server: pgserver.PgServer, tmp_path: Path
) -> None:
    db = pg_server.create_database(owner=pgserver.SPECIAL_USER)
    url = pg_server.url(db, user=pgserver.SPECIAL_USER, password=pgserver.SPECIAL_PASSWORD)
    app = samples.materialize(style, "v1", tmp_path / "app")
    done = kit.migrate_ok(app, kit.base_env(url))
    kit.assert_left_at(pg_server, db, ["0003"], done)
    url_cmd = kit.run(app, kit.base_env(url), "url")
    assert url_cmd.stdout.strip().startswith("postgresql+psycopg://app_special:***@")
    kit.assert_no_password(url_cmd)
    pg_server.drop_database(db)


@pytest.mark.parametrize(
    "style",
    [
        "seed000_env_sync_url",
        "seed001_async_settings",
        "seed002_async_engine_wrap",
        "seed004_ini_url",
    ],
)
def test_asyncpg_only_image(
    style: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = samples.materialize(style, "v2", tmp_path / "app")
    env = kit.asyncpg_only(kit.base_env(pg_server.url(pg_database)), tmp_path)
    done = kit.migrate_ok(app, env)
    assert done.result[ResultKey.DRIVER] == "asyncpg"
    assert kit.versions(pg_server, pg_database) == ["0004"]
    again = kit.run(app, env, "migrate")
    assert again.code == 0 and again.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value
    forced = kit.run(app, env, "migrate", "--driver", "psycopg")
    assert forced.code == 2 and "not importable" in forced.stdout
    kit.assert_no_password(done, again, forced)


def test_bootstrap_file_makes_the_working_directory_importable(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    """As in a Job: ``python /migrategate/run.py migrate`` from the application's directory."""
    import sys

    bootstrap = tmp_path / "payload" / "run.py"
    bootstrap.parent.mkdir()
    bootstrap.write_text("import sys\nfrom migrategate.runner.cli import main\nsys.exit(main())\n")
    app = samples.materialize("seed003_settings_sync_property", "v1", tmp_path / "app")
    result = tmp_path / "result.json"
    import subprocess

    done = subprocess.run(
        [sys.executable, str(bootstrap), "migrate", "--result-file", str(result)],
        cwd=app,
        env=kit.base_env(pg_server.url(pg_database)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kit.assert_left_at(
        pg_server, pg_database, ["0003"], done.stdout, done.stderr, result.read_text()
    )


def test_fast_path_is_one_connection_and_one_query(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, counted with SQLAlchemy's own events (dialect set-up queries are not ours)."""
    import io

    from migrategate.runner.masking import Masker
    from migrategate.runner.migrate import migrate
    from migrategate.runner.settings import Settings
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    app = samples.materialize("seed004_ini_url", "v1", tmp_path / "app")
    url = pg_server.url(pg_database)
    kit.migrate_ok(app, kit.base_env(url))
    statements: list[str] = []
    connections: list[object] = []

    def on_execute(
        conn: object, cursor: object, statement: str, params: object, ctx: object, many: bool
    ) -> None:
        statements.append(statement)

    def on_connect(dbapi_connection: object, record: object) -> None:
        connections.append(dbapi_connection)

    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Pool, "connect", on_connect)
    monkeypatch.chdir(app)
    try:
        result = migrate(Settings(), {"DATABASE_URL": url}, io.StringIO(), Masker())
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)
        event.remove(Pool, "connect", on_connect)
    assert result.exit_code == 0 and "env.py not run" in result.message
    assert len(connections) == 1
    assert statements == ['SELECT version_num FROM "alembic_version"']
