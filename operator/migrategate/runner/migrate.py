"""``migrategate migrate``: upgrade under the advisory lock through env.py, then verify.

1. The fast path: when env.py's version table is surely Alembic's default, read the heads
   with DATABASE_URL's role; at the target, finish without running env.py.
2. Take the session-level advisory lock (``database.Session.lock``), and read again.
3. ``migrate --plan-hash``: refuse unless the pending SQL still hashes to the approved plan.
4. Run Alembic's upgrade through the project's env.py (``upgrade.run_upgrade``); on a
   lock_timeout run all of it again, with backoff.
5. Verify what env.py's context found and left (``incontext.InContext``), then read the
   heads back on the runner's own session.
"""

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Callable, Optional, TextIO

from sqlalchemy.engine import URL

from .contract import Outcome
from .database import Session, lock_key, qualified
from .envpy import DEFAULT_VERSION_TABLE, Table
from .errors import (
    BadInput,
    Failure,
    LockTimedOut,
    PermissionDenied,
    RunnerError,
    VerificationFailed,
)
from .incontext import Expected, InContext, Timeouts
from .masking import Masker
from .plan import current_plan_hash
from .project import DatabaseURL, Project, prepare, when_ahead
from .result import AT_TARGET_UNRUN, Result
from .scripts import Position, unknown_revisions
from .settings import Settings
from .upgrade import run_upgrade

Sleep = Callable[[float], None]

# Delays between lock_timeout retries: doubling from 1 s to at most 30 s, with jitter so that
# runners of several databases behind one busy table do not retry in step.
LOCK_RETRY_FIRST = 1.0
LOCK_RETRY_MAX = 30.0


@dataclass(frozen=True)
class Migration:
    """One ``migrate`` run once the URL and the scripts are known, on the runner's session."""

    settings: Settings
    database: DatabaseURL
    project: Project
    session: Session
    out: TextIO
    masker: Masker
    sleep: Sleep


@dataclass(frozen=True)
class Upgrade:
    """env.py's upgrade that went through, and what it took."""

    found: InContext  # what env.py's context found and did
    attempts: int  # runs of the upgrade (more than 1 after a lock_timeout)
    lock_timeouts: tuple[str, ...]  # what each lock_timeout before it ran into


def migrate(
    settings: Settings,
    environ: Mapping[str, str],
    out: TextIO,
    masker: Masker,
    sleep: Sleep = time.sleep,
) -> Result:
    """Upgrade the database to the target under the advisory lock, then verify."""
    database, project, known = prepare(settings, environ, masker)
    try:
        with Session(database.url, database.driver) as session:
            run = Migration(settings, database, project, session, out, masker, sleep)
            return migrate_in_session(run, known)
    except Failure as failure:
        failure.record(known, masker)
        raise


def migrate_in_session(run: Migration, known: Result) -> Result:
    """Take the migration lock, upgrade through env.py and verify (the fast path skips it all)."""
    session = run.session
    try:
        known, done = at_target_outside(run, known)
        if done:
            return known.up_to_date(AT_TARGET_UNRUN)
        key = migration_lock_key(run.database.url, run.project)
        session.lock(key, run.settings.lock_timeout, run.out)
        session.ensure_lock_held(key, "right after it was taken")
        # Read again under the lock: another runner may have finished meanwhile.
        known, done = at_target_outside(run, known)
        if done:
            return known.up_to_date("nothing to do: database already at the target")
        if run.settings.plan_hash:
            known = replace(known, stale_plan=stale_plan_hash(run))
            if known.stale_plan is not None:
                raise stale_plan_error(run.settings.plan_hash, known.stale_plan)
        upgrade = upgrade_with_retries(run, known)
        known = replace(known, lock_attempts=upgrade.attempts)
        session.ensure_lock_held(key, "while env.py ran the upgrade")
        return conclude(run, upgrade, known)
    except Failure as failure:
        failure.record(known, run.masker)
        raise


def fast_path_allowed(settings: Settings, project: Project) -> bool:
    """Only skip env.py when the version table is surely Alembic's default and no -x is given."""
    return project.table == (None, DEFAULT_VERSION_TABLE) and not settings.x_args


def at_target_outside(run: Migration, known: Result) -> tuple[Result, bool]:
    """The fast path: read the heads with DATABASE_URL's role, without env.py.

    Returns what the result says then, and True if the database is at the target. False
    too when the fast path is not allowed, or its role may not read the version table
    (env.py's own role may: go and ask it).
    """
    if not fast_path_allowed(run.settings, run.project):
        return known, False
    try:
        current = run.session.versions(run.project.table_to_read)
    except PermissionDenied:
        return known, False
    return known.at(current), run.project.position(current) == Position.AT_TARGET


def migration_lock_key(url: URL, project: Project) -> int:
    """The advisory-lock key of this database and version table."""
    table = ".".join(filter(None, project.table_to_read))
    return lock_key(url.database or url.username or "", table)


def stale_plan_hash(run: Migration) -> Optional[str]:
    """Under the lock: what the pending SQL hashes to now, if that is not the approved planHash."""
    actual = current_plan_hash(run.project, run.database.url, run.session.versions)
    return None if actual == run.settings.plan_hash else actual


def stale_plan_error(approved: str, actual: str) -> BadInput:
    """``migrate --plan-hash``'s refusal when the SQL no longer hashes to the approved plan."""
    return BadInput(
        f"the approved plan {approved[:12]} is stale: the pending SQL now"
        f" hashes to {actual[:12]} (the database moved on or the image changed);"
        " make a new plan and approve that"
    )


def lock_retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): doubling, capped, with full jitter."""
    ceiling = min(LOCK_RETRY_FIRST * 2 ** (attempt - 1), LOCK_RETRY_MAX)
    return random.uniform(ceiling / 2, ceiling)


def expectations(run: Migration) -> Expected:
    """What env.py's context is judged against (and the timeouts it gets)."""
    settings = run.settings
    return Expected(
        scripts=run.project.scripts,
        goal=run.project.goal,
        if_ahead=settings.if_ahead,
        timeouts=Timeouts(settings.pg_lock_timeout, settings.statement_timeout),
        runner_session=run.session.identity(),
    )


def upgrade_with_retries(run: Migration, known: Result) -> Upgrade:
    """Run env.py's upgrade; on lock_timeout run all of it again, up to --lock-retries times.

    PostgreSQL rolled the timed-out transaction back, so each attempt starts clean, and
    traffic queued behind the migration's lock request waited at most lock_timeout.
    """
    project, settings = run.project, run.settings
    expected = expectations(run)
    attempts = settings.lock_retries + 1
    lock_timeouts: list[str] = []
    for attempt in range(1, attempts + 1):
        found = InContext(expected)
        try:
            run_upgrade(
                project.cfg,
                project.scripts,
                run.database.url,
                run.database.driver,
                project.env_source,
                found,
            )
            return Upgrade(found, attempt, tuple(lock_timeouts))
        except LockTimedOut as error:
            blocker = run.session.blocker(error.statement)
            text = f"{error.message} ({settings.pg_lock_timeout:g}s): {blocker}"
            if attempt == attempts:
                gave_up = LockTimedOut(
                    f"{text}; gave up after {attempts} attempts: end that transaction or retry"
                    " later (--lock-retries, --pg-lock-timeout)",
                    error.statement,
                    error.failed_revision,
                )
                gave_up.result = replace(known, lock_attempts=attempt)
                raise gave_up from None
            lock_timeouts.append(text)
            run.sleep(announce_retry(run, text, attempt, attempts))
        except RunnerError as error:
            error.result = after_failure(run, found, replace(known, lock_attempts=attempt))
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def announce_retry(run: Migration, text: str, attempt: int, attempts: int) -> float:
    """Print a lock_timeout retry; return the delay before it."""
    delay = lock_retry_delay(attempt)
    run.out.write(run.masker(f"{text}; retry {attempt} of {attempts - 1} in {delay:.1f}s\n"))
    return delay


def after_failure(run: Migration, found: InContext, known: Result) -> Result:
    """Where the database stands after a failed upgrade (what we last knew if unreadable)."""
    if found.position == Position.AHEAD:  # --if-ahead fail refused in env.py's context
        unknown = unknown_revisions(run.project.scripts, found.heads_before)
        return known.at(found.heads_before).ahead(unknown)
    if found.where is None:
        return replace(
            known,
            to_revisions=versions_or(run.session, run.project.table_to_read, known.to_revisions),
        )
    before = found.heads_before
    if not same_database(run.session, found):
        return known.at(before)  # Alembic's transaction rolled back to there
    return replace(
        known, from_revisions=before, to_revisions=versions_or(run.session, found.table, before)
    )


def versions_or(session: Session, table: Table, last_known: Sequence[str]) -> tuple[str, ...]:
    """The heads in ``table``, or ``last_known`` when the connection is gone too."""
    try:
        return tuple(session.versions(table))
    except Exception:  # the connection may be gone too; report what we last knew
        return tuple(last_known)


def same_database(session: Session, found: InContext) -> bool:
    """True if the runner's session sees the database env.py migrated (same name and server)."""
    mine = found.expected.runner_session
    return (
        found.where is not None
        and mine is not None
        and ((mine.database, mine.server) == (found.where.database, found.where.server))
    )


def conclude(run: Migration, upgrade: Upgrade, known: Result) -> Result:
    """What env.py's context found and did; verify the heads it left."""
    found, project = upgrade.found, run.project
    known = known.warned(*found.warnings)
    target = ", ".join(project.target)
    if found.where is None:
        raise verification_failed(
            f"env.py never called context.run_migrations(): the database is at"
            f" {', '.join(known.from_revisions) or 'base'}, not the target {target};"
            " check env.py's online branch",
            known,
        )
    known = known.at(found.heads_before)
    if found.position == Position.AT_TARGET:
        return known.up_to_date("nothing to do: database already at the target")
    if found.position == Position.AHEAD:
        return when_ahead(run.settings, project, found.heads_before, known)
    after = tuple(found.heads_after or ())
    if project.position(after) != Position.AT_TARGET:
        raise verification_failed(
            f"after the upgrade env.py's version table {qualified(found.table)} holds"
            f" {', '.join(after) or 'nothing'}, not the target {target}",
            known,
        )
    committed, warnings = read_back(run.session, found)
    known = replace(known.warned(*warnings), to_revisions=after if committed is None else committed)
    if project.position(known.to_revisions) != Position.AT_TARGET:
        raise verification_failed(
            f"after the upgrade the database is at {', '.join(known.to_revisions) or 'base'},"
            f" not the target {target}: check that env.py commits (context.begin_transaction())",
            known,
        )
    return succeeded(run, upgrade, known)


def verification_failed(message: str, known: Result) -> VerificationFailed:
    """VerificationFailed whose result is what the run found."""
    error = VerificationFailed(message)
    error.result = known
    return error


def read_back(
    session: Session, found: InContext
) -> tuple[Optional[tuple[str, ...]], tuple[str, ...]]:
    """(the heads as committed, warnings), read on the runner's own session if it sees that table.

    The heads are None when it cannot: then the check inside env.py's transaction is all.
    """
    if not same_database(session, found):
        return None, ()
    try:
        return tuple(session.versions(found.table)), ()
    except PermissionDenied as denied:
        return None, (f"verified inside env.py's transaction only: {denied.message}",)


def succeeded(run: Migration, upgrade: Upgrade, known: Result) -> Result:
    """The result of an upgrade that applied revisions and passed verification."""
    found = upgrade.found
    pending = run.project.goal.pending(run.project.scripts, found.heads_before)
    retried = ""
    if upgrade.lock_timeouts:
        retried = f" after {upgrade.attempts} attempts"
        known = known.warned(
            f"lock_timeout was hit {len(upgrade.lock_timeouts)} time(s) before the upgrade went"
            f" through; the last time: {upgrade.lock_timeouts[-1]}"
        )
    message = (
        f"upgraded {', '.join(found.heads_before) or 'base'} ->"
        f" {', '.join(found.heads_after or ())}: applied {len(pending)} revision(s){retried}"
    )
    return replace(
        known, outcome=Outcome.SUCCEEDED.value, message=message, applied_revisions=tuple(pending)
    )
