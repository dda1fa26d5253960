"""The runner's commands as plain functions (Alembic ``command.py`` style).

Each takes the settings, the environment, an output stream and the run's masker, and
returns a ``Result``; otherwise it raises a typed ``errors.Failure`` whose ``result`` holds
what the command had found before it failed. The CLI owns the mapping to exit codes and
the result file. ``migrate`` lives in migrate.py and ``plan`` in plan.py.
"""

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Callable, TextIO

from .contract import ExitCode, Outcome
from .database import Session
from .envpy import Table
from .errors import Failure, Transient
from .masking import Masker
from .migrate import Sleep, migrate
from .project import DatabaseURL, database_url, prepare, when_ahead
from .result import Result, at_target_of_wait
from .scripts import Position
from .settings import Settings
from .urls import render

Command = Callable[[Settings, Mapping[str, str], TextIO, Masker], Result]


def read_versions(database: DatabaseURL, table: Table) -> tuple[str, ...]:
    """One connection, one query: the database's heads."""
    with Session(database.url, database.driver) as session:
        return tuple(session.versions(table))


def check(settings: Settings, environ: Mapping[str, str], out: TextIO, masker: Masker) -> Result:
    """Print current and target heads; exit 0 at the target, 1 when an upgrade is pending."""
    database, project, known = prepare(settings, environ, masker)
    try:
        current = read_versions(database, project.table_to_read)
        known = known.at(current)
        target = " ".join(project.target) or "base"
        out.write(f"current: {' '.join(current) or 'base'}\ntarget: {target}\n")
        position = project.position(current)
        if position == Position.AHEAD:
            return when_ahead(settings, project, current, known)
        if position == Position.AT_TARGET:
            return known.up_to_date("database at the target: no upgrade pending")
        pending = project.goal.pending(project.scripts, current)
        message = f"upgrade pending: {len(pending)} revision(s): {' '.join(pending)}"
        return replace(
            known, outcome=Outcome.PENDING.value, message=message, exit_code=ExitCode.PENDING
        )
    except Failure as failure:
        failure.record(known, masker)
        raise


def wait(
    settings: Settings,
    environ: Mapping[str, str],
    out: TextIO,
    masker: Masker,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Result:
    """Block until the database is at the target heads; Transient after --timeout seconds."""
    database, project, known = prepare(settings, environ, masker)
    deadline = clock() + settings.timeout
    last = "not checked yet"
    try:
        while True:
            try:
                current = read_versions(database, project.table_to_read)
                known = known.at(current)
                position = project.position(current)
                if position == Position.AT_TARGET:
                    return known.up_to_date(at_target_of_wait(project.target))
                if position == Position.AHEAD:
                    return when_ahead(settings, project, current, known)
                last = f"database at {' '.join(current) or 'base'}"
            except Transient as error:  # the database may still be starting: keep waiting
                last = error.message
            if clock() >= deadline:
                raise Transient(
                    f"timed out after {settings.timeout:g}s waiting for the database to reach"
                    f" {' '.join(project.target)} ({last}): is the migration running?"
                )
            sleep(min(settings.poll_interval, max(deadline - clock(), 0.0)))
    except Failure as failure:
        failure.record(known, masker)
        raise


def url(settings: Settings, environ: Mapping[str, str], out: TextIO, masker: Masker) -> Result:
    """Print the derived sync URL, password masked unless --show-password."""
    try:
        database = database_url(settings, environ)
    except Failure as failure:
        failure.record(Result(), masker)
        raise
    out.write(render(database.url, show_password=settings.show_password) + "\n")
    return Result(outcome=Outcome.UP_TO_DATE.value, driver=database.driver)


COMMAND_FUNCTIONS: dict[str, Command] = {
    "migrate": migrate,
    "wait": wait,
    "check": check,
    "url": url,
}
