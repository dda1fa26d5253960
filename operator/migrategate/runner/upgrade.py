"""Hand the database to the project's own env.py and run Alembic's upgrade.

env.py files find the URL in different places, so it is put in all of them:
``config.attributes["connection"]`` (a connection not inside a transaction, so
Alembic owns the transaction), ``sqlalchemy.url`` (``%`` escaped) and the
``DATABASE_URL_SYNC`` environment variable. ``DATABASE_URL`` is left alone.
"""

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool, Pool

from .contract import SYNC_URL_ENV, Driver
from .database import (
    PERMISSION_DENIED,
    connect_args,
    is_permanent_connect_error,
    qualified,
    sqlstate,
)
from .envpy import reads_shared_connection, starts_own_event_loop
from .errors import BadInput, LockTimedOut, MigrationFailed, RunnerError, Transient, first_line
from .incontext import InContext
from .scripts import failing_revision
from .urls import escape_for_ini, render

# SQLSTATE 55P03 lock_not_available: lock_timeout (or NOWAIT) gave up waiting for a lock.
LOCK_NOT_AVAILABLE = "55P03"
LOCK_TIMEOUT_TEXT = "canceling statement due to lock timeout"  # drivers without a sqlstate
# SQLSTATE classes meaning the connection went away mid-run: worth a retry.
CONNECTION_LOST_STATES = ("08", "57P01", "57P02", "57P03")
UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH})


@contextlib.contextmanager
def exported(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def alembic_upgrade(cfg: Config, scripts: ScriptDirectory, decider: InContext) -> None:
    """``alembic.command.upgrade(cfg, target)`` with ``decider`` as the ``fn`` env.py runs.

    This is command.upgrade's body, with the scripts already loaded (command.upgrade builds a
    second ScriptDirectory and imports every revision file again: hundreds of ms on a long
    chain) and our ``fn``, which decides inside env.py's context and then yields the steps.
    """
    target = decider.expected.goal.destination
    environment = EnvironmentContext(
        cfg, scripts, fn=decider, as_sql=False, starting_rev=None, destination_rev=target, tag=None
    )
    with environment:
        try:
            scripts.run_env()
        except Exception:
            # Alembic reads the version table before it calls ``fn``: keep env.py's context
            # so that a failure there can still name the table.
            if decider.migration_context is None:
                with contextlib.suppress(Exception):  # env.py never called configure()
                    decider.migration_context = environment.get_context()
            raise


def _upgrade_on(connection: Any, cfg: Config, scripts: ScriptDirectory, decider: InContext) -> None:
    """Run the upgrade with ``connection`` shared with env.py (None: env.py connects itself)."""
    if connection is None:
        alembic_upgrade(cfg, scripts, decider)
        return
    cfg.attributes["connection"] = connection
    try:
        alembic_upgrade(cfg, scripts, decider)
        # env.py began no transaction of its own (or Alembic did not own it): keep its work.
        if connection.in_transaction():
            connection.commit()
    finally:
        cfg.attributes.pop("connection", None)


def _upgrade_sync(
    url: URL, driver: str, cfg: Config, scripts: ScriptDirectory, decider: InContext, share: bool
) -> None:
    """Sync driver: share a fresh connection only if env.py may read it."""
    if not share:
        _upgrade_on(None, cfg, scripts, decider)
        return
    engine = create_engine(
        url, poolclass=NullPool, connect_args=connect_args(url, driver), future=True
    )
    try:
        with engine.connect() as connection:
            _upgrade_on(connection, cfg, scripts, decider)
    finally:
        engine.dispose()


def _upgrade_in_greenlet(
    url: URL, driver: str, cfg: Config, scripts: ScriptDirectory, decider: InContext
) -> None:
    """asyncpg without a sync driver: run env.py inside ``run_sync``.

    There, sync-style code (a shared connection, or env.py's own ``create_engine``
    on the asyncpg URL) works through SQLAlchemy's greenlet bridge.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    def body(connection: Connection) -> None:
        _upgrade_on(connection, cfg, scripts, decider)

    async def go() -> None:
        engine = create_async_engine(
            url, poolclass=NullPool, connect_args=connect_args(url, driver)
        )
        try:
            async with engine.connect() as connection:
                await connection.run_sync(body)
        finally:
            await engine.dispose()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(go())
    finally:
        loop.close()


@contextlib.contextmanager
def applied_on_connect(settings: dict[str, str]) -> Iterator[None]:
    """Apply ``settings`` (SET name = value) to every connection a SQLAlchemy pool opens.

    This reaches the engines env.py makes itself, whatever the driver (psycopg, psycopg2,
    asyncpg), before env.py's first statement. Startup options would not: asyncpg ignores
    PGOPTIONS, and PgBouncer refuses an ``options`` startup parameter it does not track.
    """
    if not settings:
        yield
        return
    statements = [f"SET {name} = '{value}'" for name, value in settings.items()]

    def on_connect(dbapi_connection: Any, connection_record: Any = None) -> None:
        # In autocommit, so the SETs are not a transaction SQLAlchemy would then roll back.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
            dbapi_connection.autocommit = autocommit

    event.listen(Pool, "connect", on_connect)
    try:
        yield
    finally:
        event.remove(Pool, "connect", on_connect)


def run_upgrade(
    cfg: Config,
    scripts: ScriptDirectory,
    url: URL,
    driver: str,
    env_source: str,
    decider: InContext,
) -> None:
    """Run ``alembic upgrade <target>`` through the project's env.py; raise typed errors."""
    cfg.set_main_option("sqlalchemy.url", escape_for_ini(render(url, show_password=True)))
    share = reads_shared_connection(env_source)
    with (
        exported(SYNC_URL_ENV, render(url, show_password=True)),
        applied_on_connect(decider.expected.timeouts.settings()),
    ):
        try:
            if driver != Driver.ASYNCPG.value:
                _upgrade_sync(url, driver, cfg, scripts, decider, share)
            elif starts_own_event_loop(env_source):
                _upgrade_on(None, cfg, scripts, decider)  # env.py makes its own engine and loop
            else:
                _upgrade_in_greenlet(url, driver, cfg, scripts, decider)
        except RunnerError:
            raise
        except Exception as error:
            raise classify_failure(error, scripts, decider.migration_context) from None


def classify_failure(
    error: BaseException, scripts: ScriptDirectory, context: Any = None
) -> RunnerError:
    """Turn what env.py or a revision raised into a typed error with a one-line message.

    ``context`` is env.py's MigrationContext when it got that far (it names the version table).
    """
    revision = failing_revision(error, scripts)
    summary = first_line(error)
    state = sqlstate(error) or ""
    if state == LOCK_NOT_AVAILABLE or LOCK_TIMEOUT_TEXT in str(error):
        where = f"revision {revision}" if revision else "env.py"
        return LockTimedOut(
            f"{where} could not get a lock within lock_timeout",
            statement=str(getattr(error, "statement", "") or ""),
            failed_revision=revision,
        )
    if _connection_lost(error):
        where = f" in revision {revision}" if revision else ""
        return Transient(f"lost the database connection{where}: {summary}; retry")
    if revision is None and state == PERMISSION_DENIED and context is not None:
        return _version_table_denied(context, summary)
    if revision is None and isinstance(error, exc.OperationalError):
        if is_permanent_connect_error(error):
            return BadInput(f"env.py could not log in to the database: {summary}; check the URL")
        return Transient(f"env.py could not reach the database: {summary}; retry")
    if revision is None and _unreachable(error):
        reason = summary if str(error) else "timed out connecting"
        return Transient(f"env.py could not reach the database: {reason}; retry")
    if revision:
        return MigrationFailed(
            f"revision {revision} failed: {summary}; the transaction was rolled back,"
            " fix the revision and ship a new image",
            failed_revision=revision,
        )
    if isinstance(error, (ImportError, SyntaxError)):
        return BadInput(
            f"env.py could not be loaded: {summary}; run from the project directory"
            " (it is put on sys.path) or fix the import"
        )
    return MigrationFailed(f"env.py failed before any revision ran: {summary}")


def _unreachable(error: BaseException) -> bool:
    """A connect failure asyncpg raises bare (SQLAlchemy wraps only DBAPI errors): refused,
    reset, timed out, no route, or a host name that does not resolve."""
    network = (ConnectionError, TimeoutError, asyncio.TimeoutError, socket.gaierror)
    return isinstance(error, network) or getattr(error, "errno", None) in UNREACHABLE_ERRNOS


def _version_table_denied(context: Any, summary: str) -> BadInput:
    """env.py's role may not use its version table: name the role, the table and the GRANT."""
    table = qualified((context.version_table_schema, context.version_table))
    role = getattr(getattr(context.connection, "engine", None), "url", None)
    name = getattr(role, "username", None) or "env.py's role"
    return BadInput(
        f"{name} may not use the version table {table} ({summary}): run"
        f" GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {name}"
    )


def _connection_lost(error: BaseException) -> bool:
    """True if the error means the connection went away (a retry may succeed)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    state = sqlstate(error) or ""
    return isinstance(error, exc.OperationalError) and state.startswith(CONNECTION_LOST_STATES)
