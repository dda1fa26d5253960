"""Hand the database to the project's own env.py and run Alembic's upgrade.

env.py files find the URL in different places, so it is put in all of them:
``config.attributes["connection"]`` (a connection not inside a transaction, so
Alembic owns the transaction), ``sqlalchemy.url`` (``%`` escaped) and the
``DATABASE_URL_SYNC`` environment variable. ``DATABASE_URL`` is left alone.
"""

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, exc
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import NullPool

from .contract import SYNC_URL_ENV, Driver
from .database import connect_args, is_permanent_connect_error, sqlstate
from .errors import BadInput, MigrationFailed, RunnerError, Transient
from .scripts import failing_revision, first_line, reads_shared_connection, starts_own_event_loop
from .urls import escape_for_ini, render

# SQLSTATE classes meaning the connection went away mid-run: worth a retry.
CONNECTION_LOST_STATES = ("08", "57P01", "57P02", "57P03")


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


def alembic_upgrade(cfg: Config, scripts: ScriptDirectory, target: str) -> None:
    """``alembic.command.upgrade(cfg, target)``, reusing the scripts already loaded.

    command.upgrade builds a second ScriptDirectory and imports every revision file
    again (hundreds of ms on a long chain); this is its body, with ours. An Alembic
    without that hook gets command.upgrade itself.
    """
    upgrade_revs = getattr(scripts, "_upgrade_revs", None)
    if upgrade_revs is None or ":" in target:
        command.upgrade(cfg, target)
        return

    def upgrade(rev: Any, context: Any) -> Any:
        return upgrade_revs(target, rev)

    with EnvironmentContext(
        cfg, scripts, fn=upgrade, as_sql=False, starting_rev=None, destination_rev=target, tag=None
    ):
        scripts.run_env()


def _upgrade_on(connection: Any, cfg: Config, scripts: ScriptDirectory, target: str) -> None:
    """Run the upgrade with ``connection`` shared with env.py (None: env.py connects itself)."""
    if connection is None:
        alembic_upgrade(cfg, scripts, target)
        return
    cfg.attributes["connection"] = connection
    try:
        alembic_upgrade(cfg, scripts, target)
        # env.py began no transaction of its own (or Alembic did not own it): keep its work.
        if connection.in_transaction():
            connection.commit()
    finally:
        cfg.attributes.pop("connection", None)


def _upgrade_sync(
    url: URL, driver: str, cfg: Config, scripts: ScriptDirectory, target: str, share: bool
) -> None:
    """Sync driver: share a fresh connection only if env.py may read it."""
    if not share:
        _upgrade_on(None, cfg, scripts, target)
        return
    engine = create_engine(
        url, poolclass=NullPool, connect_args=connect_args(url, driver), future=True
    )
    try:
        with engine.connect() as connection:
            _upgrade_on(connection, cfg, scripts, target)
    finally:
        engine.dispose()


def _upgrade_in_greenlet(
    url: URL, driver: str, cfg: Config, scripts: ScriptDirectory, target: str
) -> None:
    """asyncpg without a sync driver: run env.py inside ``run_sync``.

    There, sync-style code (a shared connection, or env.py's own ``create_engine``
    on the asyncpg URL) works through SQLAlchemy's greenlet bridge.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    def body(connection: Connection) -> None:
        _upgrade_on(connection, cfg, scripts, target)

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


def run_upgrade(
    cfg: Config, scripts: ScriptDirectory, url: URL, driver: str, target: str, env_source: str
) -> None:
    """Run ``alembic upgrade <target>`` through the project's env.py; raise typed errors."""
    cfg.set_main_option("sqlalchemy.url", escape_for_ini(render(url, show_password=True)))
    share = reads_shared_connection(env_source)
    with exported(SYNC_URL_ENV, render(url, show_password=True)):
        try:
            if driver != Driver.ASYNCPG.value:
                _upgrade_sync(url, driver, cfg, scripts, target, share)
            elif starts_own_event_loop(env_source):
                _upgrade_on(None, cfg, scripts, target)  # env.py makes its own engine and loop
            else:
                _upgrade_in_greenlet(url, driver, cfg, scripts, target)
        except RunnerError:
            raise
        except Exception as error:
            raise classify_failure(error, scripts) from None


def classify_failure(error: BaseException, scripts: ScriptDirectory) -> RunnerError:
    """Turn what env.py or a revision raised into a typed error with a one-line message."""
    revision = failing_revision(error, scripts)
    summary = first_line(error)
    if _connection_lost(error):
        where = f" in revision {revision}" if revision else ""
        return Transient(f"lost the database connection{where}: {summary}; retry")
    if revision is None and isinstance(error, exc.OperationalError):
        if is_permanent_connect_error(error):
            return BadInput(f"env.py could not log in to the database: {summary}; check the URL")
        return Transient(f"env.py could not reach the database: {summary}; retry")
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


def _connection_lost(error: BaseException) -> bool:
    """True if the error means the connection went away (a retry may succeed)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    state = sqlstate(error) or ""
    return isinstance(error, exc.OperationalError) and state.startswith(CONNECTION_LOST_STATES)
