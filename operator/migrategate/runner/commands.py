"""The runner's commands as plain functions (Alembic ``command.py`` style).

Each takes the settings, the environment, an output stream and a ``Report`` it
fills in as it learns; it returns the exit code on success and raises a typed
``RunnerError`` otherwise. The CLI owns the mapping to exit codes and the result file.
"""

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from .contract import Driver, ExitCode, IfAhead, Outcome
from .database import Session, lock_key
from .errors import BadInput, RunnerError, Transient, VerificationFailed
from .result import Report
from .scripts import (
    DEFAULT_VERSION_TABLE,
    State,
    classify,
    env_py_source,
    load_config,
    load_scripts,
    pending_revisions,
    resolve_target,
    unknown_revisions,
    version_table,
)
from .upgrade import run_upgrade
from .urls import choose_driver, derive_sync_url, mask, read_async_url, render, secrets_of

Command = Callable[[Any, Mapping[str, str], TextIO, Report], int]


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
    lock_timeout: float = 300.0
    result_file: Optional[str] = None
    if_ahead: str = IfAhead.SUCCEED.value
    timeout: float = 600.0
    x_args: tuple = ()
    show_password: bool = False
    poll_interval: float = 0.5  # `wait`: seconds between looks at the database


@dataclass
class Project:
    """The image's Alembic project, resolved against the settings."""

    cfg: Config
    scripts: ScriptDirectory
    target: tuple
    env_source: str
    table: Optional[tuple]  # (schema, name) of the version table; None if env.py hides it

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
    target = resolve_target(scripts, settings.target)
    report.target_revisions = list(target)
    source = env_py_source(scripts)
    return Project(cfg, scripts, target, source, version_table(source))


def fast_path_allowed(settings: Settings, project: Project) -> bool:
    """Only skip env.py when the version table is surely Alembic's default and no -x is given."""
    return project.table == (None, DEFAULT_VERSION_TABLE) and not settings.x_args


def handle_ahead(settings: Settings, project: Project, current: list, report: Report) -> int:
    """The database holds revisions the image does not know (or is past the target)."""
    unknown = unknown_revisions(project.scripts, current) or current
    text = (
        f"database is at {', '.join(unknown)}, ahead of this image's scripts"
        f" (target {', '.join(project.target) or 'base'}); nothing was changed"
    )
    if settings.if_ahead == IfAhead.FAIL.value:
        raise BadInput(
            text + ": deploy an image that has these revisions, or use --if-ahead succeed"
        )
    report.warn(text)
    report.outcome = Outcome.UP_TO_DATE.value
    report.message = text
    return ExitCode.OK


@masks_errors
def migrate(settings: Settings, environ: Mapping[str, str], out: TextIO, report: Report) -> int:
    """Upgrade the database to the target under the advisory lock, then verify."""
    url = database_url(settings, environ, report)
    project = load_project(settings, report)
    table = project.table_to_read
    with Session(url, report.driver or "") as session:
        current = session.versions(table)
        report.from_revisions = report.to_revisions = current
        if fast_path_allowed(settings, project) and set(current) == set(project.target):
            return up_to_date(report, "database already at the target; env.py not run")
        key = lock_key(url.database or url.username or "", ".".join(filter(None, table)))
        session.lock(key, settings.lock_timeout, out)
        # Read again under the lock: another runner may have finished meanwhile.
        current = session.versions(table)
        report.from_revisions = report.to_revisions = current
        if project.table is None:
            return upgrade_unverified(settings, project, url, report)
        state = classify(project.scripts, current, project.target)
        if state == State.AT_TARGET:
            return up_to_date(report, "nothing to do: database already at the target")
        if state == State.AHEAD:
            return handle_ahead(settings, project, current, report)
        return upgrade_and_verify(settings, project, url, session, current, report)


def upgrade_and_verify(
    settings: Settings,
    project: Project,
    url: URL,
    session: Session,
    current: list,
    report: Report,
) -> int:
    """Run the project's env.py under the lock held by ``session``, then check the heads."""
    table = project.table_to_read
    pending = pending_revisions(project.scripts, current, project.target)
    driver = report.driver or ""
    try:
        run_upgrade(project.cfg, project.scripts, url, driver, settings.target, project.env_source)
    except RunnerError as error:
        report.to_revisions = _versions_after_failure(session, table, current)
        report.failed_revision = getattr(error, "failed_revision", None)
        raise
    after = session.versions(table)
    report.to_revisions = after
    if set(after) != set(project.target):
        raise VerificationFailed(
            f"after the upgrade the database is at {', '.join(after) or 'base'}, not the"
            f" target {', '.join(project.target)}: check that env.py commits and uses this"
            " database"
        )
    report.applied_revisions = pending
    report.outcome = Outcome.SUCCEEDED.value
    report.message = (
        f"upgraded {', '.join(current) or 'base'} -> {', '.join(after)}:"
        f" applied {len(pending)} revision(s)"
    )
    return ExitCode.OK


def _versions_after_failure(session: Session, table: tuple, fallback: list) -> list:
    """Where the database stands after a failed upgrade (what we last knew if unreadable)."""
    try:
        return session.versions(table)
    except Exception:  # the connection may be gone too; report what we last knew
        return fallback


def upgrade_unverified(settings: Settings, project: Project, url: URL, report: Report) -> int:
    """env.py names its version table in a way we cannot read: run Alembic, skip verification."""
    run_upgrade(
        project.cfg, project.scripts, url, report.driver or "", settings.target, project.env_source
    )
    report.warn("env.py configures its own version table: the result was not verified")
    report.outcome = Outcome.SUCCEEDED.value
    report.message = "upgrade ran (unverified: custom version table)"
    return ExitCode.OK


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
    state = classify(project.scripts, current, project.target)
    if state == State.AHEAD:
        return handle_ahead(settings, project, current, report)
    if state == State.AT_TARGET:
        return up_to_date(report, "database at the target: no upgrade pending")
    pending = pending_revisions(project.scripts, current, project.target)
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
            state = classify(project.scripts, current, project.target)
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
