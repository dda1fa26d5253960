"""The runner's own database session: one dedicated connection for the lock and version reads.

Sync drivers use a plain ``Engine``. With asyncpg (no sync driver in the image)
the same calls run on a private event loop that is never left running, so an
env.py that starts its own loop (``asyncio.run``) still can.
"""

import asyncio
import hashlib
import time
from typing import Any, Callable, Optional, TextIO

from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from .contract import Driver
from .errors import BadInput, Transient
from .scripts import DEFAULT_VERSION_TABLE, first_line

# Used only when the URL sets none: a dead host must fail within the Job, not hang it.
DEFAULT_CONNECT_TIMEOUT = 10
# pg_try_advisory_lock polling: start fast (the common case is a short wait), back off to 1 s.
LOCK_POLL_FIRST = 0.05
LOCK_POLL_MAX = 1.0

# SQLSTATEs that retrying cannot fix: bad password, no such role or database.
PERMANENT_CONNECT_STATES = frozenset({"28P01", "28000", "3D000"})
PERMANENT_CONNECT_TEXT = (
    "password authentication failed",
    "does not exist",
    "no password supplied",
)


def lock_key(database: str, version_table: str = DEFAULT_VERSION_TABLE) -> int:
    """The advisory-lock key: a signed 64-bit hash of the database and the version table."""
    digest = hashlib.sha256(f"migrategate\0{database}\0{version_table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect_args(url: URL, driver: str) -> dict:
    """Connect arguments that bound the connect wait when the URL does not."""
    if driver == Driver.ASYNCPG.value:
        return {} if "timeout" in url.query else {"timeout": DEFAULT_CONNECT_TIMEOUT}
    return {} if "connect_timeout" in url.query else {"connect_timeout": DEFAULT_CONNECT_TIMEOUT}


def sqlstate(error: BaseException) -> Optional[str]:
    """The SQLSTATE of a DBAPI error, whichever driver raised it."""
    orig = getattr(error, "orig", None) or error
    for attr in ("sqlstate", "pgcode"):
        value = getattr(orig, attr, None)
        if isinstance(value, str):
            return value
    return None


def is_permanent_connect_error(error: BaseException) -> bool:
    """True for failures a retry cannot fix (credentials, missing database)."""
    if sqlstate(error) in PERMANENT_CONNECT_STATES:
        return True
    message = str(error).lower()
    return any(fragment in message for fragment in PERMANENT_CONNECT_TEXT)


def connect_failure(error: BaseException, url: URL) -> Exception:
    """The typed error for a failed connect, naming the server but never the password."""
    where = f"{url.host or 'local socket'}:{url.port or 5432}/{url.database or ''}"
    if is_permanent_connect_error(error):
        return BadInput(
            f"cannot log in to the database at {where} ({first_line(error)}):"
            " check the user, password and database name in the URL"
        )
    return Transient(
        f"cannot reach the database at {where} ({first_line(error)}):"
        " check the host and port in the URL, or retry once the database is up"
    )


class Session:
    """One dedicated AUTOCOMMIT connection (so it never holds a transaction open)."""

    def __init__(self, url: URL, driver: str) -> None:
        self.url = url
        self.driver = driver
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._engine: Any = None
        self._conn: Any = None

    @property
    def is_async(self) -> bool:
        return self.driver == Driver.ASYNCPG.value

    def _run(self, value: Any) -> Any:
        """Await ``value`` on the private loop in asyncpg mode; pass it through otherwise."""
        if self.is_async:
            assert self._loop is not None
            return self._loop.run_until_complete(value)
        return value

    def open(self) -> "Session":
        """Connect; raise ``Transient`` or ``BadInput`` when that fails."""
        args = connect_args(self.url, self.driver)
        try:
            if self.is_async:
                from sqlalchemy.ext.asyncio import create_async_engine

                self._loop = asyncio.new_event_loop()
                self._engine = create_async_engine(self.url, poolclass=NullPool, connect_args=args)
                conn = self._run(self._engine.connect())
                self._conn = self._run(conn.execution_options(isolation_level="AUTOCOMMIT"))
            else:
                self._engine = create_engine(
                    self.url, poolclass=NullPool, connect_args=args, future=True
                )
                self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except (exc.DBAPIError, OSError, asyncio.TimeoutError) as error:
            self.close()
            raise connect_failure(error, self.url) from None
        return self

    def __enter__(self) -> "Session":
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (releasing a session lock) and the engine."""
        try:
            if self._conn is not None:
                self._run(self._conn.close())
            if self._engine is not None:
                self._run(self._engine.dispose())
        except Exception:  # closing after a lost connection must not mask the real error
            pass
        finally:
            self._conn = self._engine = None
            if self._loop is not None:
                self._loop.close()
                self._loop = None

    def scalars(self, sql: str, **params: Any) -> list:
        """Run one statement; return the first column of every row."""
        try:
            result = self._run(self._conn.execute(text(sql), params))
            return list(result.scalars().all())
        except exc.DBAPIError as error:
            if error.connection_invalidated or isinstance(error, exc.OperationalError):
                raise Transient(f"lost the database connection: {first_line(error)}") from None
            raise

    def versions(self, table: tuple = (None, DEFAULT_VERSION_TABLE)) -> list:
        """The revisions in the version table; [] when the table does not exist yet."""
        schema, name = table
        qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
        try:
            return sorted(self.scalars(f"SELECT version_num FROM {qualified}"))
        except exc.ProgrammingError:  # undefined table: nothing migrated yet
            return []

    def try_lock(self, key: int) -> bool:
        """Try once to take the session-level advisory lock."""
        return bool(self.scalars("SELECT pg_try_advisory_lock(:key)", key=key)[0])

    def lock(
        self,
        key: int,
        timeout: float,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float:
        """Take the advisory lock, waiting at most ``timeout`` seconds; return the wait."""
        started = clock()
        delay = LOCK_POLL_FIRST
        told = False
        while not self.try_lock(key):
            waited = clock() - started
            if waited >= timeout:
                raise Transient(
                    f"timed out after {timeout:g}s waiting for the migration lock: another"
                    " migration of this database is running; retry, or raise --lock-timeout"
                )
            if not told:
                out.write("waiting for the migration lock (another migration is running)\n")
                told = True
            sleep(min(delay, max(timeout - waited, 0.0)))
            delay = min(delay * 2, LOCK_POLL_MAX)
        return clock() - started
