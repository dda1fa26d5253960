"""The runner's own database session: one dedicated connection for the lock and version reads.

Sync drivers use a plain ``Engine``. With asyncpg (no sync driver in the image)
the same calls run on a private event loop that is never left running, so an
env.py that starts its own loop (``asyncio.run``) still can.
"""

import asyncio
import hashlib
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO

from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from .contract import Driver
from .envpy import DEFAULT_VERSION_TABLE, Table
from .errors import BadInput, PermissionDenied, Transient, first_line

# Used only when the URL sets none: a dead host must fail within the Job, not hang it.
DEFAULT_CONNECT_TIMEOUT = 10
# pg_try_advisory_lock polling: start fast (the common case is a short wait), back off to 1 s.
LOCK_POLL_FIRST = 0.05
LOCK_POLL_MAX = 1.0

# SQLSTATE 42501 insufficient_privilege: a role may not read (or write) the version table.
PERMISSION_DENIED = "42501"

# A custom setting each runner writes in its own session before taking the lock: if another
# client's value shows up, the session is shared (a transaction-mode pooler).
SESSION_TOKEN_SETTING = "migrategate.session"

POOLER_ADVICE = (
    "a connection pooler in transaction mode (e.g. PgBouncer pool_mode=transaction) is between"
    " the runner and PostgreSQL, so the session-level migration lock protects nothing: point"
    " databaseURL (DATABASE_URL) at PostgreSQL itself or at a session-mode pool"
)

# The session most likely behind a lock_timeout: the oldest open transaction holding a lock on
# a relation the failed statement names (else on any user relation of this database).
BLOCKER_SQL = """
SELECT a.pid, c.relname, coalesce(a.state, ''),
       extract(epoch FROM now() - a.xact_start)::float8, coalesce(a.query, '')
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
JOIN pg_class c ON c.oid = l.relation
WHERE l.granted AND l.locktype = 'relation' AND a.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.xact_start IS NOT NULL AND c.relnamespace <> 'pg_catalog'::regnamespace
ORDER BY position(lower(c.relname) IN lower(:statement)) > 0 DESC, a.xact_start
LIMIT 1
"""

# What a session is connected to, as the server sees it (same query on env.py's connection).
IDENTITY_SQL = (
    "SELECT current_database(), current_user,"
    " coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local socket')"
)

# SQL string literals, blanked in quoted queries: they may hold data or credentials.
SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")
MAX_QUOTED_QUERY = 160

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


def qualified(table: Table) -> str:
    """``schema.name`` (or ``name``) of a (schema or None, name) table, double-quoted."""
    schema, name = table
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def quote_query(query: str) -> str:
    """A statement shortened to one line for a message, its string literals blanked."""
    flat = " ".join(SQL_LITERAL.sub("'...'", query).split())
    return flat if len(flat) <= MAX_QUOTED_QUERY else flat[: MAX_QUOTED_QUERY - 3] + "..."


@dataclass(frozen=True)
class Identity:
    """Which database a connection reached, as which role, on which server address."""

    database: str
    role: str
    server: str  # "address:port" as the server sees it, or "local socket"


def connect_args(url: URL, driver: str) -> dict[str, int]:
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
        self.token = os.urandom(
            8
        ).hex()  # marks this runner's server session (SESSION_TOKEN_SETTING)

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

    def _execute(self, sql: str, params: dict[str, Any]) -> Any:
        """Run one statement; a lost connection becomes Transient."""
        try:
            return self._run(self._conn.execute(text(sql), params))
        except exc.DBAPIError as error:
            if error.connection_invalidated or isinstance(error, exc.OperationalError):
                raise Transient(f"lost the database connection: {first_line(error)}") from None
            raise

    def scalars(self, sql: str, **params: Any) -> list[Any]:
        """Run one statement; return the first column of every row."""
        return list(self._execute(sql, params).scalars().all())

    def row(self, sql: str, **params: Any) -> tuple[Any, ...]:
        """Run one statement; return its first row."""
        return tuple(self._execute(sql, params).one())

    def identity(self) -> Identity:
        """The database, role and server address of this session."""
        return Identity(*self.row(IDENTITY_SQL))

    def versions(self, table: Table = (None, DEFAULT_VERSION_TABLE)) -> list[str]:
        """The revisions in the version table; [] when the table does not exist yet.

        A role that may not read the table gets BadInput naming the GRANT: "base" would be a lie.
        """
        try:
            return sorted(self.scalars(f"SELECT version_num FROM {qualified(table)}"))
        except exc.ProgrammingError as error:
            if sqlstate(error) == PERMISSION_DENIED:
                raise self._cannot_read(table) from None
            return []  # undefined table: nothing migrated yet

    def _cannot_read(self, table: Table) -> PermissionDenied:
        """The one-line error for a version table this session's role may not read."""
        role, schema = self.row("SELECT current_user, current_schema()")
        where = qualified((table[0] or schema, table[1]))
        return PermissionDenied(
            f"role {role} may not read the version table {where} (permission denied):"
            f" run GRANT SELECT ON {where} TO {role}, or give DATABASE_URL a role that can"
        )

    def blocker(self, statement: str) -> str:
        """Who most likely holds the lock a statement timed out on: pid, table and query."""
        try:
            found = self.row(BLOCKER_SQL, statement=statement or "")
        except Exception:  # gone meanwhile, or not visible: the retry report does without
            return "the blocking session is gone"
        pid, relation, state, seconds, query = found
        return (
            f"a lock on {relation} held by pid {pid} ({state or 'active'},"
            f" transaction open {seconds:.0f}s): {quote_query(query) or 'query not visible'}"
        )

    def try_lock(self, key: int) -> bool:
        """Try once to take the session-level advisory lock, marking the session as ours."""
        return bool(
            self.row(
                "SELECT set_config(:setting, :token, false), pg_try_advisory_lock(:key)",
                setting=SESSION_TOKEN_SETTING,
                token=self.token,
                key=key,
            )[1]
        )

    def holds_lock(self, key: int, check_token: bool = True) -> bool:
        """True if this backend holds the advisory lock (and still carries our mark)."""
        high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        held, mark = self.row(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_backend_pid() AND classid::int8 = :high AND objid::int8 = :low"
            " AND objsubid = 1), current_setting(:setting, true)",
            high=high,
            low=low,
            setting=SESSION_TOKEN_SETTING,
        )
        return bool(held) and (mark == self.token or not check_token)

    def ensure_lock_held(self, key: int, when: str) -> None:
        """BadInput if a pooler gave this session's lock (or the session) to someone else."""
        if not self.holds_lock(key):
            raise BadInput(f"the migration lock was lost {when}: {POOLER_ADVICE}")

    def lock(
        self,
        key: int,
        timeout: float,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Take the advisory lock, waiting at most ``timeout`` seconds.

        A fresh session cannot hold the lock yet: if it does, the server session is shared
        with another client (a transaction-mode pooler), whose lock it would just reuse.
        """
        if self.holds_lock(key, check_token=False):
            raise BadInput(
                f"the migration lock is already held by this very session: {POOLER_ADVICE}"
            )
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
