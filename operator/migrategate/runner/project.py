"""What every command starts from: the database URL and the image's Alembic project."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Optional

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from .contract import IfAhead
from .envpy import DEFAULT_VERSION_TABLE, Table, version_table
from .errors import Failure, RunnerError
from .masking import Masker
from .phases import Goal, resolve_goal
from .result import Result
from .scripts import (
    Position,
    ahead_error,
    ahead_message,
    env_py_source,
    load_config,
    load_scripts,
    unknown_revisions,
)
from .settings import Settings
from .urls import choose_driver, derive_sync_url, read_async_url


@dataclass(frozen=True)
class DatabaseURL:
    """The URL Alembic runs with (derived from the async URL) and the driver it names."""

    url: URL
    driver: str


@dataclass(frozen=True)
class Project:
    """The image's Alembic project, resolved against the settings."""

    cfg: Config
    scripts: ScriptDirectory
    env_source: str
    table: Optional[Table]  # the version table env.py names; None if its text hides it
    goal: Goal  # the phase this run applies and how to judge the database against it

    @property
    def target(self) -> tuple[str, ...]:
        return self.goal.target

    def position(self, current: Sequence[str]) -> Position:
        """Where the database with these heads stands relative to this run's goal."""
        return self.goal.position(self.scripts, current)

    @property
    def table_to_read(self) -> Table:
        """The version table to read: the project's, or Alembic's default when it is hidden."""
        return self.table or (None, DEFAULT_VERSION_TABLE)


def database_url(settings: Settings, environ: Mapping[str, str]) -> DatabaseURL:
    """The URL Alembic runs with, derived from the async URL, and its driver.

    A failure once the driver is chosen (a query parameter with no sync equivalent)
    still reports the driver.
    """
    async_url = read_async_url(environ, settings.database_url_env)
    driver = choose_driver(settings.driver)
    try:
        return DatabaseURL(derive_sync_url(async_url, driver), driver)
    except RunnerError as error:
        error.result = Result(driver=driver)
        raise


def load_project(settings: Settings) -> Project:
    """Read alembic.ini, the scripts and env.py; resolve the target."""
    cfg = load_config(settings.config, settings.section, settings.x_args)
    scripts = load_scripts(cfg)
    goal = resolve_goal(scripts, settings.target, settings.phase, settings.contract_branch)
    source = env_py_source(scripts)
    return Project(cfg, scripts, source, version_table(source), goal)


def prepare(
    settings: Settings, environ: Mapping[str, str], masker: Masker
) -> tuple[DatabaseURL, Project, Result]:
    """The database URL, the project, and what every result says once both are known.

    How every command but ``url`` starts. A failure here is recorded as in the commands
    (``errors.Failure``): masked, and with the driver once it is chosen.
    """
    known = Result()
    try:
        database = database_url(settings, environ)
        known = Result(driver=database.driver)
        project = load_project(settings)
    except Failure as failure:
        failure.record(known, masker)
        raise
    phases = project.goal.describe()
    return database, project, replace(known, target_revisions=project.target, phases=phases)


def when_ahead(
    settings: Settings, project: Project, current: Sequence[str], known: Result
) -> Result:
    """The database holds revisions the image does not know (or is past the target)."""
    known = known.ahead(unknown_revisions(project.scripts, current))
    if settings.if_ahead == IfAhead.FAIL.value:
        error = ahead_error(project.scripts, current, project.target)
        error.result = known
        raise error
    text = ahead_message(project.scripts, current, project.target)
    return known.warned(text).up_to_date(text)
