"""The runner's commands as plain functions (Alembic ``command.py`` style).

Each takes the settings, the environment, an output stream and a ``Report`` it
fills in as it learns; it returns the exit code on success and raises a typed
``RunnerError`` otherwise. The CLI owns the mapping to exit codes and the result file.
"""

import functools
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from .contract import DEFAULT_CONTRACT_BRANCH, Driver, ExitCode, IfAhead, Outcome
from .database import Session, lock_key, qualified
from .errors import (
    BadInput,
    LockTimedOut,
    PermissionDenied,
    RunnerError,
    Transient,
    VerificationFailed,
)
from .incontext import Expected, InContext, Timeouts
from .phases import Goal, resolve_goal
from .plan import current_plan_hash
from .result import Report
from .scripts import (
    DEFAULT_VERSION_TABLE,
    State,
    ahead_error,
    ahead_message,
    env_py_source,
    load_config,
    load_scripts,
    version_table,
)
from .upgrade import run_upgrade
from .urls import choose_driver, derive_sync_url, mask, read_async_url, render, secrets_of

Command = Callable[[Any, Mapping[str, str], TextIO, Report], int]

# Delays between lock_timeout retries: doubling from 1 s to at most 30 s, with jitter so that
# runners of several databases behind one busy table do not retry in step.
LOCK_RETRY_FIRST = 1.0
LOCK_RETRY_MAX = 30.0


def masks_errors(command: Command) -> Command:
    """Mask the URL's password in the message of any RunnerError the command raises.

    Error texts come from drivers, env.py and the app; this is the one place that
    cleans them, so the exception object itself never carries the password.
    """

    @functools.wraps(command)
    def run(settings: Any, environ: Mapping[str, str], out: TextIO, report: Report) -> int:
        try:
            return command(settings, environ, out, report)
        except RunnerError as error:
            error.message = mask(error.message, report.secrets)
            error.args = (error.message,)
            raise

    return run


@dataclass(frozen=True)
class Settings:
    """Everything a command needs; the CLI builds it from flags and environment variables."""

    config: str = "alembic.ini"
    section: str = "alembic"
    target: str = "head"
    database_url_env: str = "DATABASE_URL"
    driver: str = Driver.AUTO.value
    lock_timeout: float = 300.0  # seconds to wait for the advisory (migration) lock
    pg_lock_timeout: float = 5.0  # PostgreSQL lock_timeout of the migration's connections
    statement_timeout: float = 0.0  # PostgreSQL statement_timeout; 0 leaves the server's
    lock_retries: int = 5  # runs of the whole upgrade again after a lock_timeout
    result_file: Optional[str] = None
    if_ahead: str = IfAhead.SUCCEED.value
    timeout: float = 600.0
    x_args: tuple = ()
    show_password: bool = False
    poll_interval: float = 0.5  # `wait`: seconds between looks at the database
    plan_hash: Optional[str] = None  # `migrate`: apply only if the pending SQL hashes to this
    phase: Optional[str] = None  # contract.Phase value; None: expand with a contract branch
    contract_branch: str = DEFAULT_CONTRACT_BRANCH  # branch label of the contract revisions


@dataclass
class Project:
    """The image's Alembic project, resolved against the settings."""

    cfg: Config
    scripts: ScriptDirectory
    target: tuple
    env_source: str
    table: Optional[tuple]  # (schema, name) of the version table; None if env.py hides it
    goal: Goal  # the phase this run applies and how to judge the database against it

    def state(self, current: Any) -> State:
        """Where the database with these heads stands relative to this run's goal."""
        return self.goal.state(self.scripts, current)

    @property
    def table_to_read(self) -> tuple:
        """The version table to read: the project's, or Alembic's default when it is hidden."""
        return self.table or (None, DEFAULT_VERSION_TABLE)


def read_versions(url: URL, table: tuple, report: Report) -> list:
    """One connection, one query: the database's heads, recorded in the report."""
    with Session(url, report.driver or "") as session:
        current = session.versions(table)
    report.from_revisions = report.to_revisions = current
    return current


def database_url(settings: Settings, environ: Mapping[str, str], report: Report) -> URL:
    """The URL Alembic runs with, derived from the async URL; its password goes to the masker."""
    url = read_async_url(environ, settings.database_url_env)
    report.secrets = secrets_of(url)
    driver = choose_driver(settings.driver)
    report.driver = driver
    return derive_sync_url(url, driver)


def load_project(settings: Settings, report: Report) -> Project:
    """Read alembic.ini, the scripts and env.py; resolve the target."""
    cfg = load_config(settings.config, settings.section, settings.x_args)
    scripts = load_scripts(cfg)
    goal = resolve_goal(scripts, settings.target, settings.phase, settings.contract_branch)
    report.phases = goal.describe()
    report.target_revisions = list(goal.target)
    source = env_py_source(scripts)
    return Project(cfg, scripts, goal.target, source, version_table(source), goal)


def fast_path_allowed(settings: Settings, project: Project) -> bool:
    """Only skip env.py when the version table is surely Alembic's default and no -x is given."""
    return project.table == (None, DEFAULT_VERSION_TABLE) and not settings.x_args


def handle_ahead(settings: Settings, project: Project, current: list, report: Report) -> int:
    """The database holds revisions the image does not know (or is past the target)."""
    if settings.if_ahead == IfAhead.FAIL.value:
        raise ahead_error(project.scripts, current, project.target)
    text = ahead_message(project.scripts, current, project.target)
    report.warn(text)
    report.outcome = Outcome.UP_TO_DATE.value
    report.message = text
    return ExitCode.OK


def at_target_outside(session: Session, project: Project, report: Report) -> bool:
    """The fast path's read with DATABASE_URL's role: True if the database is at the target.

    False when its role may not read the table: env.py's own role may, so go and ask it.
    """
    try:
        current = session.versions(project.table_to_read)
    except PermissionDenied:
        return False
    report.from_revisions = report.to_revisions = current
    return project.state(current) == State.AT_TARGET


@masks_errors
def migrate(
    settings: Settings,
    environ: Mapping[str, str],
    out: TextIO,
    report: Report,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Upgrade the database to the target under the advisory lock, then verify."""
    url = database_url(settings, environ, report)
    project = load_project(settings, report)
    shortcut = fast_path_allowed(settings, project)
    with Session(url, report.driver or "") as session:
        if shortcut and at_target_outside(session, project, report):
            return up_to_date(report, "database already at the target; env.py not run")
        key = lock_key(
            url.database or url.username or "", ".".join(filter(None, project.table_to_read))
        )
        session.lock(key, settings.lock_timeout, out)
        session.ensure_lock_held(key, "right after it was taken")
        # Read again under the lock: another runner may have finished meanwhile.
        if shortcut and at_target_outside(session, project, report):
            return up_to_date(report, "nothing to do: database already at the target")
        if settings.plan_hash:
            ensure_plan_approved(settings, project, url, session, report)
        found = upgrade_with_retries(settings, project, url, session, out, report, sleep)
        session.ensure_lock_held(key, "while env.py ran the upgrade")
        return conclude(settings, project, session, found, report)


def ensure_plan_approved(
    settings: Settings, project: Project, url: URL, session: Session, report: Report
) -> None:
    """Under the lock: BadInput unless the pending SQL still hashes to the approved planHash."""
    actual = current_plan_hash(project.cfg, project.scripts, url, project.goal, session.versions)
    if actual != settings.plan_hash:
        report.stale_plan = actual
        raise BadInput(
            f"the approved plan {str(settings.plan_hash)[:12]} is stale: the pending SQL now"
            f" hashes to {actual[:12]} (the database moved on or the image changed);"
            " make a new plan and approve that"
        )


def lock_retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): doubling, capped, with full jitter."""
    ceiling = min(LOCK_RETRY_FIRST * 2 ** (attempt - 1), LOCK_RETRY_MAX)
    return random.uniform(ceiling / 2, ceiling)


def expectations(settings: Settings, project: Project, session: Session) -> Expected:
    """What env.py's context is judged against (and the timeouts it gets)."""
    return Expected(
        scripts=project.scripts,
        target_spec=project.goal.destination,
        target=project.target,
        if_ahead=settings.if_ahead,
        timeouts=Timeouts(settings.pg_lock_timeout, settings.statement_timeout),
        runner_session=session.identity(),
        goal=project.goal,
    )


def upgrade_with_retries(
    settings: Settings,
    project: Project,
    url: URL,
    session: Session,
    out: TextIO,
    report: Report,
    sleep: Callable[[float], None],
) -> InContext:
    """Run env.py's upgrade; on lock_timeout run all of it again, up to --lock-retries times.

    PostgreSQL rolled the timed-out transaction back, so each attempt starts clean, and
    traffic queued behind the migration's lock request waited at most lock_timeout.
    """
    expected = expectations(settings, project, session)
    attempts = settings.lock_retries + 1
    for attempt in range(1, attempts + 1):
        report.lock_attempts = attempt
        found = InContext(expected)
        try:
            run_upgrade(
                project.cfg, project.scripts, url, report.driver or "", project.env_source, found
            )
            return found
        except LockTimedOut as error:
            text = (
                f"{error.message} ({settings.pg_lock_timeout:g}s):"
                f" {session.blocker(error.statement)}"
            )
            if attempt == attempts:
                raise LockTimedOut(
                    f"{text}; gave up after {attempts} attempts: end that transaction or retry"
                    " later (--lock-retries, --pg-lock-timeout)",
                    error.statement,
                    error.failed_revision,
                ) from None
            sleep(announce_retry(text, attempt, attempts, out, report))
        except RunnerError as error:
            report.to_revisions = versions_after_failure(session, project, found, report)
            report.failed_revision = getattr(error, "failed_revision", None)
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def announce_retry(text: str, attempt: int, attempts: int, out: TextIO, report: Report) -> float:
    """Print a lock_timeout retry and keep it for the result; return the delay before it."""
    delay = lock_retry_delay(attempt)
    report.lock_timeouts.append(text)
    out.write(mask(f"{text}; retry {attempt} of {attempts - 1} in {delay:.1f}s\n", report.secrets))
    return delay


def versions_after_failure(
    session: Session, project: Project, found: InContext, report: Report
) -> list:
    """Where the database stands after a failed upgrade (what we last knew if unreadable)."""
    if found.where is not None:
        report.from_revisions = list(found.heads_before)
    try:
        if found.where is not None and not same_database(session, found):
            return list(found.heads_before)  # Alembic's transaction rolled back to there
        return session.versions(found.table if found.where else project.table_to_read)
    except Exception:  # the connection may be gone too; report what we last knew
        return list(found.heads_before) if found.where else report.to_revisions


def same_database(session: Session, found: InContext) -> bool:
    """True if the runner's session sees the database env.py migrated (same name and server)."""
    mine = found.expected.runner_session
    return (
        found.where is not None
        and mine is not None
        and ((mine.database, mine.server) == (found.where.database, found.where.server))
    )


def conclude(
    settings: Settings, project: Project, session: Session, found: InContext, report: Report
) -> int:
    """Report what env.py's context found and did; verify the heads it left."""
    for warning in found.warnings:
        report.warn(warning)
    target = ", ".join(project.target)
    if found.where is None:
        raise VerificationFailed(
            f"env.py never called context.run_migrations(): the database is at"
            f" {', '.join(report.from_revisions) or 'base'}, not the target {target};"
            " check env.py's online branch"
        )
    report.from_revisions = report.to_revisions = list(found.heads_before)
    if found.state == State.AT_TARGET:
        return up_to_date(report, "nothing to do: database already at the target")
    if found.state == State.AHEAD:
        return handle_ahead(settings, project, list(found.heads_before), report)
    after = list(found.heads_after or ())
    where = qualified(found.table)
    if project.state(after) != State.AT_TARGET:
        raise VerificationFailed(
            f"after the upgrade env.py's version table {where} holds"
            f" {', '.join(after) or 'nothing'}, not the target {target}"
        )
    committed = read_back(session, found, report)
    report.to_revisions = committed if committed is not None else after
    if project.state(report.to_revisions) != State.AT_TARGET:
        raise VerificationFailed(
            f"after the upgrade the database is at {', '.join(report.to_revisions) or 'base'},"
            f" not the target {target}: check that env.py commits (context.begin_transaction())"
        )
    pending = project.goal.pending(project.scripts, found.heads_before)
    report.applied_revisions = pending
    report.outcome = Outcome.SUCCEEDED.value
    retried = ""
    if report.lock_timeouts:
        retried = f" after {report.lock_attempts} attempts"
        report.warn(
            f"lock_timeout was hit {len(report.lock_timeouts)} time(s) before the upgrade went"
            f" through; the last time: {report.lock_timeouts[-1]}"
        )
    report.message = (
        f"upgraded {', '.join(found.heads_before) or 'base'} -> {', '.join(after)}:"
        f" applied {len(pending)} revision(s){retried}"
    )
    return ExitCode.OK


def read_back(session: Session, found: InContext, report: Report) -> Optional[list]:
    """The heads as committed, read on the runner's own session when it sees the same table.

    None when it cannot: then the check inside env.py's transaction is all there is.
    """
    if not same_database(session, found):
        return None
    try:
        return session.versions(found.table)
    except PermissionDenied as denied:
        report.warn(f"verified inside env.py's transaction only: {denied.message}")
        return None


def up_to_date(report: Report, message: str) -> int:
    """Record that there was nothing to do."""
    report.outcome = Outcome.UP_TO_DATE.value
    report.message = message
    return ExitCode.OK


@masks_errors
def check(settings: Settings, environ: Mapping[str, str], out: TextIO, report: Report) -> int:
    """Print current and target heads; exit 0 at the target, 1 when an upgrade is pending."""
    url = database_url(settings, environ, report)
    project = load_project(settings, report)
    current = read_versions(url, project.table_to_read, report)
    out.write(
        f"current: {' '.join(current) or 'base'}\ntarget: {' '.join(project.target) or 'base'}\n"
    )
    state = project.state(current)
    if state == State.AHEAD:
        return handle_ahead(settings, project, current, report)
    if state == State.AT_TARGET:
        return up_to_date(report, "database at the target: no upgrade pending")
    pending = project.goal.pending(project.scripts, current)
    report.outcome = Outcome.PENDING.value
    report.message = f"upgrade pending: {len(pending)} revision(s): {' '.join(pending)}"
    return ExitCode.PENDING


@masks_errors
def wait(
    settings: Settings,
    environ: Mapping[str, str],
    out: TextIO,
    report: Report,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Block until the database is at the target heads; Transient after --timeout seconds."""
    url = database_url(settings, environ, report)
    project = load_project(settings, report)
    table = project.table_to_read
    deadline = clock() + settings.timeout
    last = "not checked yet"
    while True:
        try:
            current = read_versions(url, table, report)
            state = project.state(current)
            if state == State.AT_TARGET:
                return up_to_date(report, f"database at the target {' '.join(project.target)}")
            if state == State.AHEAD:
                return handle_ahead(settings, project, current, report)
            last = f"database at {' '.join(current) or 'base'}"
        except Transient as error:  # the database may still be starting: keep waiting
            last = error.message
        if clock() >= deadline:
            raise Transient(
                f"timed out after {settings.timeout:g}s waiting for the database to reach"
                f" {' '.join(project.target)} ({last}): is the migration running?"
            )
        sleep(min(settings.poll_interval, max(deadline - clock(), 0.0)))


@masks_errors
def url(settings: Settings, environ: Mapping[str, str], out: TextIO, report: Report) -> int:
    """Print the derived sync URL, password masked unless --show-password."""
    derived = database_url(settings, environ, report)
    out.write(render(derived, show_password=settings.show_password) + "\n")
    report.outcome = Outcome.UP_TO_DATE.value
    return ExitCode.OK


COMMAND_FUNCTIONS = {"migrate": migrate, "wait": wait, "check": check, "url": url}
