"""Lock-safe apply (lock_timeout, retries) and the pooler check, against a real server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pgserver
import pytest
import runnerkit as kit
import samples
from migrategate.runner.contract import ErrorClass, ExitCode, Outcome, ResultKey
from pgproxy import shared_connection_proxy

pytestmark = pytest.mark.postgres

STYLE = "seed004_ini_url"
LOCK_TIMEOUT = 1.0
# The blocker's query carries a literal that must never reach the runner's output.
BLOCKER_QUERY = "SELECT count(*) FROM items WHERE name <> 'card-4111-secret'"


@pytest.fixture
def env(pg_server: pgserver.PgServer, pg_database: str) -> dict[str, str]:
    return kit.base_env(pg_server.url(pg_database))


def app_at(version: str, tmp_path: Path, style: str = STYLE) -> Path:
    return samples.materialize(style, version, tmp_path / f"app-{version}")


class Traffic(threading.Thread):
    """Production traffic: a read of ``items`` every 50 ms; remembers the slowest."""

    def __init__(self, pg: pgserver.PgServer, db: str) -> None:
        super().__init__(daemon=True)
        self.connection = pg.connection(db)
        self.slowest = 0.0
        self.reads = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            self.connection.execute("SELECT count(*) FROM items").fetchall()
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.reads += 1
            self.stopped.wait(0.05)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)
        self.connection.close()


def lock_waits(pg: pgserver.PgServer, db: str) -> int:
    """Sessions of ``db`` waiting for a relation lock right now."""
    rows = pg.execute(
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND wait_event_type = 'Lock'"
    )
    return int(rows[0][0])


def test_a_long_transaction_delays_traffic_by_at_most_the_lock_timeout(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    """0004 ALTERs items while a transaction holds it: traffic waits ~lock_timeout, not 6 s."""
    kit.migrate_ok(app_at("v1", tmp_path), env)
    blocker = pg_server.connection(pg_database)
    blocker.execute("BEGIN")
    blocker.execute(BLOCKER_QUERY)
    traffic = Traffic(pg_server, pg_database)
    traffic.start()
    result = tmp_path / "locked.json"
    args = ("migrate", "--pg-lock-timeout", str(LOCK_TIMEOUT), "--lock-retries", "20")
    runner = kit.start(app_at("v2", tmp_path), env, *args, result=result)
    try:
        time.sleep(6.0)  # the blocker's transaction: far longer than the lock timeout
        assert runner.poll() is None, "the migration gave up while the blocker was open"
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    done = kit.finish(runner, result)
    traffic.stop()
    assert done.code == 0, done.output
    assert done.result[ResultKey.OUTCOME] == Outcome.SUCCEEDED.value
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0004"]
    assert done.result[ResultKey.LOCK_ATTEMPTS] >= 2
    assert "revision 0004 could not get a lock within lock_timeout (1s)" in done.stdout
    assert "a lock on items held by pid" in done.stdout and "; retry 1 of 20 in" in done.stdout
    assert "lock_timeout was hit" in done.result[ResultKey.WARNINGS][0]
    assert "card-4111-secret" not in done.output + str(done.result)
    assert traffic.reads > 20
    # Queued behind the ALTER's lock request, a read waits until lock_timeout cancels it:
    # about a second (slack for a loaded machine), never the blocker's 6 s.
    assert traffic.slowest < LOCK_TIMEOUT + 1.5, traffic.slowest
    kit.assert_left_at(pg_server, pg_database, ["0004"], done)


@pytest.mark.parametrize(
    ("style", "asyncpg_only"),
    [
        (STYLE, False),  # psycopg, env.py's own engine
        ("seed001_async_settings", True),  # env.py's own asyncpg engine and event loop
        ("seed000_env_sync_url", True),  # asyncpg through the runner's run_sync
    ],
)
def test_lock_retries_exhausted_exit_3_naming_the_lock_and_its_holder(
    style: str,
    asyncpg_only: bool,
    pg_server: pgserver.PgServer,
    pg_database: str,
    env: dict,
    tmp_path: Path,
) -> None:
    if asyncpg_only:
        env = kit.asyncpg_only(env, tmp_path)
    kit.migrate_ok(app_at("v1", tmp_path, style), env)
    with pg_server.connection(pg_database) as blocker:
        pid = blocker.execute("SELECT pg_backend_pid()").fetchone()[0]
        blocker.execute("BEGIN")
        blocker.execute(BLOCKER_QUERY)  # the last query pg_stat_activity shows for it
        args = ("migrate", "--pg-lock-timeout", "0.3", "--lock-retries", "1")
        done = kit.run(app_at("v2", tmp_path, style), env, *args)
        blocker.execute("ROLLBACK")
    assert done.code == ExitCode.TRANSIENT, done.output
    assert done.result[ResultKey.ERROR_CLASS] == ErrorClass.TRANSIENT.value
    assert done.result[ResultKey.LOCK_ATTEMPTS] == 2
    assert done.result[ResultKey.FAILED_REVISION] == "0004"
    message = done.result[ResultKey.MESSAGE]
    assert "revision 0004 could not get a lock within lock_timeout (0.3s)" in message
    assert f"a lock on items held by pid {pid} (idle in transaction" in message
    assert "SELECT count(*) FROM items WHERE name <> '...'" in message
    assert "gave up after 2 attempts" in message
    assert "card-4111-secret" not in done.output + str(done.result)
    assert done.stdout.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.output
    kit.assert_left_at(pg_server, pg_database, ["0003"], done)


def test_statement_timeout_reaches_the_migration(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    """0004 of v2 waits on an advisory lock the test holds: statement_timeout cancels it."""
    kit.migrate_ok(app_at("v1", tmp_path), env)
    with pg_server.connection(pg_database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
        done = kit.run(app_at("v2", tmp_path), env, "migrate", "--statement-timeout", "0.5")
    assert done.code == ExitCode.MIGRATION_FAILED, done.output
    assert "revision 0004 failed" in done.stdout and "statement timeout" in done.stdout
    kit.assert_no_password(done)


@contextlib.contextmanager
def behind_a_transaction_pooler(pg: pgserver.PgServer, db: str) -> Iterator[dict[str, str]]:
    """The environment of an app whose DATABASE_URL goes through a transaction-mode pooler."""
    socket_path = pg.socket_dir / f".s.PGSQL.{pg.port}"
    with shared_connection_proxy(socket_path, pgserver.APP_USER, db) as port:
        yield kit.base_env(pg.url(db).replace(f"@{pg.host}:{pg.port}/", f"@127.0.0.1:{port}/"))


def test_behind_a_transaction_pooler_the_second_runner_finds_the_lock_reused(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    """The first runner's session lock outlives it in the shared server session."""
    with behind_a_transaction_pooler(pg_server, pg_database) as env:
        first = kit.migrate_ok(app_at("v1", tmp_path), env)
        second = kit.run(app_at("v2", tmp_path), env, "migrate")
    assert second.code == ExitCode.BAD_INPUT, second.output
    assert "already held by this very session" in second.stdout
    assert "point databaseURL (DATABASE_URL) at PostgreSQL itself" in second.stdout
    assert len(second.stdout.strip().splitlines()) == 1
    kit.assert_left_at(pg_server, pg_database, ["0003"], first, second)


def test_two_concurrent_runners_behind_a_transaction_pooler(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    """Both get the lock of one shared session; the check stops at least one of them."""
    with behind_a_transaction_pooler(pg_server, pg_database) as env:
        app = app_at("v1", tmp_path)
        results = [tmp_path / "a.json", tmp_path / "b.json"]
        procs = [kit.start(app, env, "migrate", result=r) for r in results]
        runs = [kit.finish(p, r) for p, r in zip(procs, results, strict=True)]
    caught = [r for r in runs if "pooler in transaction mode" in r.stdout]
    assert caught, [r.output for r in runs]
    for run in caught:
        assert run.code == ExitCode.BAD_INPUT and "Traceback" not in run.output
    kit.assert_no_password(*runs)


@pytest.mark.parametrize(
    "driver", ["postgresql+psycopg", "postgresql+psycopg2", "postgresql+asyncpg"]
)
def test_engines_env_py_makes_get_the_timeouts_on_connect(
    driver: str, pg_server: pgserver.PgServer, pg_database: str
) -> None:
    """An engine env.py makes during the upgrade, of any driver, starts with the timeouts."""
    import asyncio

    from migrategate.runner.upgrade import applied_on_connect
    from sqlalchemy import create_engine, text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    query = text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
    url = pg_server.url(pg_database, driver=driver)

    async def read_async() -> tuple:
        engine = create_async_engine(url, poolclass=NullPool)
        async with engine.connect() as connection:
            row = (await connection.execute(query)).one()
        await engine.dispose()
        return tuple(row)

    def read() -> tuple:
        if driver.endswith("asyncpg"):
            return asyncio.run(read_async())
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as connection:
            return tuple(connection.execute(query).one())

    with applied_on_connect({"lock_timeout": "1500ms", "statement_timeout": "60000ms"}):
        assert read() == ("1500ms", "1min")
    assert read() == ("0", "0")  # only while the upgrade runs
