"""Typed failures of the runner's commands; the CLI maps each to one exit code."""

from typing import Optional

from .contract import ErrorClass, ExitCode


class RunnerError(Exception):
    """A failure with a one-line, actionable message (never a password, never a traceback)."""

    exit_code = ExitCode.MIGRATION_FAILED
    error_class = ErrorClass.MIGRATION_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(RunnerError):
    """The URL, the Alembic config or the target is wrong: retrying will not help."""

    exit_code = ExitCode.BAD_INPUT
    error_class = ErrorClass.BAD_INPUT


class PermissionDenied(BadInput):
    """The role may not read the version table (SQLSTATE 42501): a GRANT fixes it."""


class Transient(RunnerError):
    """The database is unreachable or busy (lock wait, `wait` timeout): retry later."""

    exit_code = ExitCode.TRANSIENT
    error_class = ErrorClass.TRANSIENT


class LockTimedOut(Transient):
    """A revision waited longer than lock_timeout for a table lock (SQLSTATE 55P03).

    PostgreSQL rolled the transaction back, so the whole upgrade can simply run again.
    """

    def __init__(self, message: str, statement: str, failed_revision: Optional[str]) -> None:
        super().__init__(message)
        self.statement = statement
        self.failed_revision = failed_revision


class MigrationFailed(RunnerError):
    """A revision (or env.py) raised; Postgres rolled the transaction back."""

    exit_code = ExitCode.MIGRATION_FAILED
    error_class = ErrorClass.MIGRATION_FAILED

    def __init__(self, message: str, failed_revision: Optional[str] = None) -> None:
        super().__init__(message)
        self.failed_revision = failed_revision


class VerificationFailed(RunnerError):
    """After the upgrade the database heads are not the target."""

    exit_code = ExitCode.VERIFY_FAILED
    error_class = ErrorClass.VERIFY_FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop now.

    Raised by the runner's SIGTERM handler wherever the main thread is. It is a
    KeyboardInterrupt, not an Exception, so the ``except Exception`` of env.py, Alembic or
    SQLAlchemy lets it through, and psycopg (3) cancels the statement in flight as it does
    on Ctrl-C; closing the connections then rolls back an unfinished migration and frees
    the advisory lock.
    """

    exit_code = ExitCode.TERMINATED
    error_class = ErrorClass.TERMINATED
