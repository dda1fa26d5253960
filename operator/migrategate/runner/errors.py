"""Typed failures of the runner's commands; the CLI maps each to one exit code."""

from typing import TYPE_CHECKING, Optional

from .contract import ErrorClass, ExitCode
from .masking import Masker

if TYPE_CHECKING:  # result.py needs nothing from here; this only names the type
    from .result import Result


class Failure(BaseException):
    """What ends a command early; it carries what the command had found by then (``result``).

    Each command ends in ``except Failure as failure: failure.record(known, masker)`` and
    re-raises: the result then still says the driver, the target and the revisions read so
    far, and the message, which may come from drivers, env.py or the app, is masked right
    there, so even the exception object never carries the password.
    """

    message: str
    # None until the command (or a step nearer the failure, which knew more) sets it.
    result: Optional["Result"] = None

    def record(self, known: "Result", masker: Masker) -> None:
        """Mask the message; take ``known`` as the result unless one was set nearer the failure."""
        if self.result is None:
            self.result = known
        self.message = masker(self.message)
        self.args = (self.message,)


class RunnerError(Exception, Failure):
    """A failure with a one-line, actionable message (never a password, never a traceback)."""

    exit_code = ExitCode.MIGRATION_FAILED
    error_class = ErrorClass.MIGRATION_FAILED
    failed_revision: Optional[str] = None  # the revision whose upgrade() raised, if one did

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
    """A revision (or env.py) raised; Postgres rolled the transaction back.

    Its exit code and error class are RunnerError's: an error nobody classified is one too.
    """

    def __init__(self, message: str, failed_revision: Optional[str] = None) -> None:
        super().__init__(message)
        self.failed_revision = failed_revision


class VerificationFailed(RunnerError):
    """After the upgrade the database heads are not the target."""

    exit_code = ExitCode.VERIFY_FAILED
    error_class = ErrorClass.VERIFY_FAILED


class Terminated(KeyboardInterrupt, Failure):
    """SIGTERM arrived: stop now.

    Raised by the runner's SIGTERM handler wherever the main thread is. It is a
    KeyboardInterrupt, not an Exception, so the ``except Exception`` of env.py, Alembic or
    SQLAlchemy lets it through, and psycopg (3) cancels the statement in flight as it does
    on Ctrl-C; closing the connections then rolls back an unfinished migration and frees
    the advisory lock.
    """

    exit_code = ExitCode.TERMINATED
    error_class = ErrorClass.TERMINATED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, a one-line summary of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
