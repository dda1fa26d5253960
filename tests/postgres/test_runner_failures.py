"""Locking, concurrency, failures, bad input, ahead, wait and check against a real server."""

from __future__ import annotations

import time
from pathlib import Path

import pgserver
import psycopg
import pytest
import runnerkit as kit
import samples
from migrategate.runner.contract import ErrorClass, ExitCode, Outcome, ResultKey
from migrategate.runner.database import lock_key

pytestmark = pytest.mark.postgres

STYLE = "seed004_ini_url"


@pytest.fixture
def env(pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path) -> dict[str, str]:
    return kit.base_env(pg_server.url(pg_database), tmp_path / "env-py-ran")


def app_at(version: str, tmp_path: Path, style: str = STYLE) -> Path:
    return samples.materialize(style, version, tmp_path / f"app-{version}")


def app_session(pg: pgserver.PgServer, db: str) -> psycopg.Connection:
    """A separate session in the application database, holding locks for a test."""
    return pg.connection(db)


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` until true (never a bare sleep as a synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def advisory_waiters(pg: pgserver.PgServer, db: str) -> int:
    """Sessions of ``db`` waiting on an advisory lock."""
    rows = pg.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        f" WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = '{db}'"
    )
    return int(rows[0][0])


def app_sessions(pg: pgserver.PgServer, db: str) -> int:
    """Sessions the application role has open in ``db``."""
    rows = pg.execute(
        "SELECT count(*) FROM pg_stat_activity"
        f" WHERE datname = '{db}' AND usename = '{pgserver.APP_USER}'"
    )
    return int(rows[0][0])


def test_two_concurrent_migrations_apply_once(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    app = app_at("v2", tmp_path)
    marker = Path(env["SAMPLE_IMPORT_MARKER"])
    results = [tmp_path / "a.json", tmp_path / "b.json"]
    with app_session(pg_server, pg_database) as holder:
        # Hold revision 0004 open, so both processes are surely running at the same time.
        holder.execute("SELECT pg_advisory_lock(%s)", (samples.SLOW_LOCK_KEY,))
        procs = [kit.start(app, env, "migrate", result=r) for r in results]
        # One waits inside revision 0004 (slow lock), the other in the runner's lock poll.
        wait_for(lambda: advisory_waiters(pg_server, pg_database) >= 1, what="revision 0004")
        # holder + first runner (lock session, env.py's engine) + second runner's lock session
        wait_for(lambda: app_sessions(pg_server, pg_database) >= 4, what="second runner")
        assert all(p.poll() is None for p in procs)
        holder.execute("SELECT pg_advisory_unlock(%s)", (samples.SLOW_LOCK_KEY,))
    runs = [kit.finish(p, r) for p, r in zip(procs, results, strict=True)]
    assert [r.code for r in runs] == [0, 0], [r.output for r in runs]
    outcomes = sorted(r.result[ResultKey.OUTCOME] for r in runs)
    assert outcomes == [Outcome.SUCCEEDED.value, Outcome.UP_TO_DATE.value]
    applied = sorted(r.result[ResultKey.APPLIED_REVISIONS] for r in runs)
    assert applied == [[], ["0001", "0002", "0003", "0004"]]
    assert kit.marker_lines(marker) == 1  # env.py ran in exactly one process
    # The other found the work done: under the lock, or on the fast path when its first read
    # came after the winner had finished (the lock is polled, so the test cannot pin which).
    idle = next(r for r in runs if r.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value)
    message = idle.result[ResultKey.MESSAGE]
    assert "nothing to do" in message or "already at the target" in message, message
    kit.assert_left_at(pg_server, pg_database, ["0004"], *runs)


def test_failing_revision_exits_4_and_names_it(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    broken = kit.failed_upgrade(app_at("v1", tmp_path), app_at("v2-broken", tmp_path), env)
    assert kit.versions(pg_server, pg_database) == ["0003"]  # the last good revision
    columns = pg_server.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'",
        pg_database,
    )
    assert ("created_at",) not in columns  # 0004's DDL was rolled back with it

    fixed = kit.migrate_ok(app_at("v3", tmp_path), env)
    assert fixed.result[ResultKey.APPLIED_REVISIONS] == ["0004", "0005"]
    kit.assert_no_password(broken, fixed)


def test_failure_mid_chain_from_empty_rolls_everything_back(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    broken = kit.run(app_at("v2-broken", tmp_path), env, "migrate")
    assert broken.code == ExitCode.MIGRATION_FAILED
    assert broken.result[ResultKey.FAILED_REVISION] == "0004"
    assert broken.result[ResultKey.APPLIED_REVISIONS] == []
    # Alembic ran 0001..0004 in one transaction: Postgres rolled all of it back.
    kit.assert_left_at(pg_server, pg_database, [], broken)


def test_lock_held_elsewhere_exits_3(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    with app_session(pg_server, pg_database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_database),))
        started = time.monotonic()
        done = kit.run(app_at("v1", tmp_path), env, "migrate", "--lock-timeout", "1")
        elapsed = time.monotonic() - started
    assert done.code == ExitCode.TRANSIENT, done.output
    assert done.result[ResultKey.ERROR_CLASS] == ErrorClass.TRANSIENT.value
    assert "timed out after 1s waiting for the migration lock" in done.stdout
    assert elapsed < 30
    kit.assert_left_at(pg_server, pg_database, [], done)


def test_unreachable_database_is_transient_and_bad_password_is_bad_input(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = app_at("v1", tmp_path)
    closed = pgserver.free_port()
    url = pg_server.url(pg_database).replace(f":{pg_server.port}/", f":{closed}/")
    down = kit.run(app, kit.base_env(url), "migrate")
    assert down.code == ExitCode.TRANSIENT, down.output
    assert "cannot reach the database" in down.stdout
    wrong = pg_server.url(pg_database, password=pgserver.SPECIAL_PASSWORD)
    denied = kit.run(app, kit.base_env(wrong), "migrate")
    assert denied.code == ExitCode.BAD_INPUT, denied.output
    assert "check the user, password and database name" in denied.stdout
    kit.assert_no_password(down, denied)


BRANCH = samples.revision_source("0003b", "0002")


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("malformed-url", "is not a valid database URL"),
        ("missing-variable", "DATABASE_URL is not set"),
        ("unknown-target", "unknown target revision 'feedface'"),
        ("multiple-heads", "multiple heads (0003, 0003b)"),
    ],
)
def test_bad_input_exits_2_with_one_actionable_line(
    case: str, fragment: str, env: dict, tmp_path: Path
) -> None:
    app = app_at("v1", tmp_path)
    args = ["migrate"]
    if case == "malformed-url":
        env["DATABASE_URL"] = env["DATABASE_URL"].replace("@127.0.0.1:", "@127.0.0.1:x")
    elif case == "missing-variable":
        del env["DATABASE_URL"]
    elif case == "unknown-target":
        args += ["--target", "feedface"]
    else:
        (samples.versions_dir(app) / "0003b_branch.py").write_text(BRANCH)
    done = kit.run(app, env, *args)
    assert done.code == ExitCode.BAD_INPUT, done.output
    assert fragment in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1 and "Traceback" not in done.output
    assert done.result[ResultKey.ERROR_CLASS] == ErrorClass.BAD_INPUT.value
    kit.assert_no_password(done)


def test_database_ahead_of_the_image(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    kit.ahead_runs(app_at("v2", tmp_path), app_at("v1", tmp_path), env)
    assert kit.versions(pg_server, pg_database) == ["0004"]


def test_wait_returns_once_migrated_and_times_out_otherwise(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    app = app_at("v1", tmp_path)
    timed_out = kit.run(app, env, "wait", "--timeout", "1")
    assert timed_out.code == ExitCode.TRANSIENT, timed_out.output
    assert "timed out after 1s" in timed_out.stdout

    result = tmp_path / "wait.json"
    waiter = kit.start(app, env, "wait", "--timeout", "90", result=result)
    time.sleep(1.0)  # let it look at least once and find the database behind
    assert waiter.poll() is None
    kit.migrate_ok(app, env)
    waited = kit.finish(waiter, result, timeout=60)
    assert waited.code == 0, waited.output
    assert waited.result[ResultKey.TO_REVISIONS] == ["0003"]
    kit.assert_no_password(timed_out, waited)


def test_check_reports_pending_then_at_target(env: dict, tmp_path: Path) -> None:
    app = app_at("v1", tmp_path)
    pending = kit.run(app, env, "check")
    assert pending.code == ExitCode.PENDING
    assert "current: base" in pending.stdout and "target: 0003" in pending.stdout
    assert pending.result[ResultKey.OUTCOME] == Outcome.PENDING.value
    kit.migrate_ok(app, env)
    done = kit.run(app, env, "check")
    assert done.code == 0 and "current: 0003" in done.stdout
    kit.assert_no_password(pending, done)


SHARED_ENV_PY = """
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the runner did not share a connection")
if connection.in_transaction():
    raise RuntimeError("the shared connection is already inside a transaction")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
"""


@pytest.mark.parametrize("asyncpg_only", [False, True])
def test_env_py_that_uses_the_shared_connection(
    asyncpg_only: bool, pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    """The cookbook style: env.py runs on config.attributes["connection"]."""
    app = app_at("v1", tmp_path)
    (app / "alembic" / "env.py").write_text(SHARED_ENV_PY)
    if asyncpg_only:
        env = kit.asyncpg_only(env, tmp_path)
    done = kit.migrate_ok(app, env)
    assert done.result[ResultKey.DRIVER] == ("asyncpg" if asyncpg_only else "psycopg")
    kit.assert_left_at(pg_server, pg_database, ["0003"], done)


def test_database_down_then_back(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    """Server stopped: migrate exits 3 (retryable), wait keeps trying until it is back."""
    app = app_at("v1", tmp_path)
    result = tmp_path / "wait.json"
    pg_server.stop()
    try:
        down = kit.run(app, env, "migrate")
        assert down.code == ExitCode.TRANSIENT, down.output
        assert "cannot reach the database" in down.stdout
        waiter = kit.start(app, env, "wait", "--timeout", "120", result=result)
        time.sleep(1.5)  # long enough for it to fail to connect at least once
        assert waiter.poll() is None
    finally:
        pg_server.start()
    up = kit.migrate_ok(app, env)
    waited = kit.finish(waiter, result, timeout=60)
    assert waited.code == 0, waited.output
    kit.assert_no_password(down, up, waited)


FORGETFUL_ENV_PY = """
from alembic import context

# Connects, but never runs the migrations: Alembic reports no error.
context.configure(url=context.config.get_main_option("sqlalchemy.url"))
"""


def test_env_py_that_does_not_migrate_fails_verification(
    pg_server: pgserver.PgServer, pg_database: str, env: dict, tmp_path: Path
) -> None:
    app = app_at("v1", tmp_path)
    (app / "alembic" / "env.py").write_text(FORGETFUL_ENV_PY)
    done = kit.run(app, env, "migrate")
    assert done.code == ExitCode.VERIFY_FAILED, done.output
    assert done.result[ResultKey.ERROR_CLASS] == ErrorClass.VERIFY_FAILED.value
    assert "not the target 0003" in done.stdout
    kit.assert_left_at(pg_server, pg_database, [], done)


LEAKY_ENV_PY = """
import os

# An env.py that puts the URL in its error, as careless code does.
raise RuntimeError("cannot use " + os.environ["DATABASE_URL_SYNC"])
"""


def test_password_in_env_py_errors_is_masked_everywhere(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from migrategate.runner.errors import MigrationFailed
    from migrategate.runner.masking import Masker
    from migrategate.runner.migrate import migrate
    from migrategate.runner.settings import Settings

    db = pg_server.create_database(owner=pgserver.SPECIAL_USER)
    url = pg_server.url(db, user=pgserver.SPECIAL_USER, password=pgserver.SPECIAL_PASSWORD)
    app = app_at("v1", tmp_path)
    (app / "alembic" / "env.py").write_text(LEAKY_ENV_PY)
    done = kit.run(app, kit.base_env(url), "migrate")
    assert done.code == ExitCode.MIGRATION_FAILED
    assert "env.py failed before any revision ran: RuntimeError: cannot use" in done.stdout
    assert "app_special:***@" in done.stdout
    kit.assert_no_password(done)

    # In-process, the exception object itself is masked too.
    monkeypatch.chdir(app)
    with pytest.raises(MigrationFailed) as raised:
        migrate(Settings(), {"DATABASE_URL": url}, io.StringIO(), Masker.for_url(url))
    kit.assert_no_password(str(raised.value), raised.value.message, repr(raised.value.args))
    pg_server.drop_database(db)
