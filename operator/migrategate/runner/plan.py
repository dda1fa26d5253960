"""``migrategate plan``: the pending revisions' SQL, rendered offline, linted, and hashed.

1. Read the database's current heads: one connection, read-only
   (``default_transaction_read_only``), no lock, no write. With ``--from`` nothing
   connects at all (a CI pipeline without a database).
2. Render each pending revision on its own, ``<its down revisions>:<it>``, with
   Alembic's offline mode through the project's own env.py, unchanged.
   A revision that cannot be rendered is reported with the reason, never as empty:
   env.py's offline branch does not run the migrations, or the revision raised
   (typically it reads the database, and offline there is no connection).
3. Lint each revision's SQL with squawk, without Alembic's version-table statements
   (``lint.py``); print the SQL, the findings and the ``planHash`` to stdout.

Stdlib, SQLAlchemy and Alembic only, Python >= 3.9.
"""

import argparse
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, TextIO

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from .contract import PLAN_OPTIONS, SYNC_URL_ENV, ExitCode, IfAhead, LintStatus, Outcome
from .database import Session
from .envpy import DEFAULT_VERSION_TABLE, Table
from .errors import BadInput, Failure, first_line
from .lint import LintOutcome, clip, lint_plan, severity_rank
from .masking import Masker
from .plan_result import PlanResult
from .project import Project, prepare
from .result import Result
from .scripts import Position, known_revisions, unknown_revisions
from .settings import Settings, option_value
from .upgrade import exported
from .urls import escape_for_ini, render

BASE = "base"
TRANSACTION_STATEMENTS = frozenset({"BEGIN;", "COMMIT;"})
NOT_RUN = (
    "env.py's offline branch does not run the migrations (context.run_migrations() is"
    " never called when context.is_offline_mode()), so no SQL can be rendered offline"
)
LIVE_DATABASE_HINT = (
    "a revision that reads the database (op.get_bind(), inspect) has no connection offline"
)


@dataclass(frozen=True)
class PlanOptions:
    """``plan``'s own options (contract.PLAN_OPTIONS)."""

    from_revisions: Optional[str] = None  # None: read the database
    squawk: Optional[str] = None
    fail_on: Optional[str] = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> "PlanOptions":
        """Flags first, then the options' environment variables."""
        return cls(
            **{o.name: option_value(o, getattr(args, o.name), environ) for o in PLAN_OPTIONS}
        )


class Capture(io.StringIO):
    """Alembic's offline output buffer: one write per statement or comment (``static_output``)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def write(self, text: str) -> int:
        self.chunks.append(text)
        return super().write(text)

    @property
    def text(self) -> str:
        return self.getvalue()


@dataclass
class Rendered:
    """One revision's offline rendering, or why there is none."""

    revision: str
    start: tuple[str, ...]  # the revisions it upgrades from (() for base)
    sql: str = ""
    statements: int = 0
    lint_sql: str = ""  # sql without Alembic's version-table statements
    reason: Optional[str] = None  # set when unrenderable

    @property
    def header(self) -> str:
        start = ",".join(self.start) or BASE
        return f"-- revision {self.revision} ({start} -> {self.revision})\n"

    @property
    def block(self) -> str:
        """What is printed and hashed for this revision."""
        if self.reason is not None:
            return self.header.rstrip("\n") + ": UNRENDERABLE\n\n"
        return self.header + self.sql


@dataclass
class Probe:
    """What running env.py offline with no steps showed."""

    ran_migrations: bool = False
    table: Optional[Table] = None  # the version table env.py configured
    error: Optional[str] = None


@dataclass
class Renderer:
    """Runs the project's env.py in offline mode, one revision at a time."""

    cfg: Config
    scripts: ScriptDirectory
    url: URL
    seen: dict[str, Any] = field(default_factory=dict)

    def _run(self, start: tuple[str, ...], destination: Optional[str], buffer: Capture) -> None:
        """One offline ``alembic upgrade <start>:<destination> --sql`` through env.py."""
        self.seen.clear()
        scripts = self.scripts

        def steps(rev: Any, context: Any) -> Any:
            self.seen["context"] = context
            if destination is None:  # the probe: learn the context, run nothing
                return []
            return scripts._upgrade_revs(destination, rev)

        self.cfg.output_buffer = buffer
        rendered_url = render(self.url, show_password=True)
        self.cfg.set_main_option("sqlalchemy.url", escape_for_ini(rendered_url))
        try:
            context = EnvironmentContext(
                self.cfg,
                scripts,
                fn=steps,
                as_sql=True,
                starting_rev=list(start) or None,
                destination_rev=destination,
                tag=None,
            )
            with exported(SYNC_URL_ENV, rendered_url), context:
                scripts.run_env()
        finally:
            self.cfg.output_buffer = None

    def probe(self) -> Probe:
        """Run env.py offline with nothing to do: does it run migrations, and on which table?"""
        try:
            self._run((), None, Capture())
        except (Exception, SystemExit) as error:
            return Probe(error=first_line(error))
        context = self.seen.get("context")
        if context is None:
            return Probe()
        return Probe(True, (context.version_table_schema, context.version_table))

    def render(self, revision: str, start: tuple[str, ...]) -> Rendered:
        """Render one revision; an unrenderable one carries the reason."""
        rendered = Rendered(revision, start)
        buffer = Capture()
        try:
            self._run(start, revision, buffer)
        except (Exception, SystemExit) as error:
            if "context" not in self.seen:
                rendered.reason = f"env.py failed in offline mode: {first_line(error)}"
            else:
                rendered.reason = (
                    f"revision {revision} raised in offline mode: {first_line(error)};"
                    f" {LIVE_DATABASE_HINT}"
                )
            return rendered
        context = self.seen.get("context")
        if context is None:
            rendered.reason = NOT_RUN
            return rendered
        bookkeeping = version_table_statement(context.version_table_schema, context.version_table)
        kept = []
        for chunk in buffer.chunks:
            statement = chunk.strip()
            if bookkeeping.match(statement):
                continue
            kept.append(chunk)
            if statement and not statement.startswith("--") and not is_transaction(statement):
                rendered.statements += 1
        rendered.sql = buffer.text
        rendered.lint_sql = "".join(kept)
        return rendered


def is_transaction(statement: str) -> bool:
    """BEGIN; or COMMIT; as Alembic writes them around a migration."""
    return statement.upper() in TRANSACTION_STATEMENTS


def version_table_statement(schema: Optional[str], table: str) -> "re.Pattern[str]":
    """Alembic's own statements on its version table (create, insert, update, delete)."""
    qualified = (rf'"?{re.escape(schema)}"?\.' if schema else "") + rf'"?{re.escape(table)}"?'
    return re.compile(
        rf"^(CREATE TABLE|INSERT INTO|UPDATE|DELETE FROM)\s+{qualified}(\s|\(|$)", re.IGNORECASE
    )


def plan_hash(blocks: list[str]) -> str:
    """sha256 (hex) of the printed plan: each revision's header line and SQL, in order."""
    return hashlib.sha256("".join(blocks).encode("utf-8")).hexdigest()


def start_of(scripts: ScriptDirectory, revision: str) -> tuple[str, ...]:
    """The revisions a revision upgrades from (its down revisions); () for base."""
    script = scripts.get_revision(revision)
    down = script.down_revision if script is not None else None
    if down is None:
        return ()
    return tuple(down) if isinstance(down, (tuple, list)) else (down,)


def parse_from(scripts: ScriptDirectory, value: str) -> list[str]:
    """``--from``: comma-separated revision ids, or base; each must be in the scripts."""
    revisions = [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
    if revisions in ([], [BASE]):
        return []
    known = known_revisions(scripts)
    unknown = [r for r in revisions if r not in known]
    if unknown:
        raise BadInput(
            f"--from names {', '.join(unknown)}, not a revision of these scripts:"
            " pass revision ids or base"
        )
    return sorted(revisions)


def read_database(url: URL, driver: str, table: Table) -> tuple[list[str], Optional[str]]:
    """(current heads, server version "15.4") through one read-only connection, no lock."""
    with Session(url, driver) as session:
        session.scalars("SELECT set_config('default_transaction_read_only', 'on', false)")
        current = session.versions(table)
        number = session.scalars("SELECT current_setting('server_version_num')")
    try:
        version_num = int(number[0])
        server = f"{version_num // 10000}.{version_num % 10000}"
    except (IndexError, TypeError, ValueError):
        server = None
    return current, server


def plan(
    settings: Settings,
    options: PlanOptions,
    environ: Mapping[str, str],
    out: TextIO,
    masker: Masker,
) -> Result:
    """Render, lint and hash the pending revisions; print them; change nothing."""
    database, project, known = prepare(settings, environ, masker)
    try:
        renderer = Renderer(project.cfg, project.scripts, database.url)
        probe = renderer.probe()
        table = probe.table or project.table
        if table is None:
            table = (None, DEFAULT_VERSION_TABLE)
            known = known.warned(
                "env.py's version table could not be learnt offline: read alembic_version"
            )
        if options.from_revisions is None:
            current, pg_version = read_database(database.url, database.driver, table)
        else:
            current, pg_version = parse_from(project.scripts, options.from_revisions), None
        # From here on the result carries the plan's keys, even when planning fails.
        known = replace(known.at(current), plan=PlanResult())
        pending, warnings = revisions_to_plan(settings, project, current)
        known = known.warned(*warnings)
        planned, rendered = make_plan(renderer, probe, pending, options, environ, pg_version)
        if planned.lint_status != LintStatus.LINTED.value:
            known = known.warned(f"linting {planned.lint_status.lower()}: {planned.lint_reason}")
        print_plan(out, masker, current, project.target, rendered, planned)
        return replace(
            known,
            plan=planned,
            outcome=Outcome.PLANNED.value if pending else Outcome.UP_TO_DATE.value,
            message=summary(current, project.target, planned),
            exit_code=exit_code(planned, options.fail_on),
        )
    except Failure as failure:
        failure.record(known, masker)
        raise


def revisions_to_plan(
    settings: Settings, project: Project, current: Sequence[str]
) -> tuple[list[str], tuple[str, ...]]:
    """The revisions to plan from ``current`` (oldest first), and the warnings that go with it."""
    scripts, goal = project.scripts, project.goal
    position = goal.position(scripts, current)
    if position == Position.AHEAD:
        unknown = unknown_revisions(scripts, current) or list(current)
        text = (
            f"database is at {', '.join(unknown)}, ahead of this image's scripts"
            f" (target {', '.join(project.target) or 'base'}): nothing to plan"
        )
        if settings.if_ahead == IfAhead.FAIL.value:
            raise BadInput(text + ": deploy an image that has these revisions")
        return [], (text,)
    if position == Position.BEHIND:
        goal.ensure_ready(scripts, current)  # --phase contract: as migrate would refuse
        return goal.pending(scripts, current), ()
    return [], ()


def make_plan(
    renderer: Renderer,
    probe: Probe,
    pending: list[str],
    options: PlanOptions,
    environ: Mapping[str, str],
    pg_version: Optional[str],
) -> tuple[PlanResult, list[Rendered]]:
    """Render each pending revision, lint what rendered, hash the printed blocks."""
    rendered = [render_one(renderer, probe, rev) for rev in pending]
    lintable = [(r.revision, r.lint_sql) for r in rendered if r.reason is None]
    if lintable:
        lint = lint_plan(lintable, options.squawk, environ, pg_version)
    elif pending:
        lint = LintOutcome(LintStatus.SKIPPED.value, None, "no revision could be rendered")
    else:
        lint = LintOutcome(LintStatus.LINTED.value, None, None)  # nothing pending: nothing to lint
    planned = PlanResult(
        plan_hash=plan_hash([r.block for r in rendered]),
        pending=pending,
        statement_count=sum(r.statements for r in rendered),
        findings=lint.findings,
        unrenderable=[(r.revision, r.reason) for r in rendered if r.reason is not None],
        lint_status=lint.status,
        linter=lint.linter,
        lint_reason=lint.reason,
    )
    return planned, rendered


def current_plan_hash(
    project: Project, url: URL, read_current: Callable[[Table], Sequence[str]]
) -> str:
    """The planHash ``plan`` would print now; ``read_current(version table)`` gives the heads.

    ``migrate --plan-hash`` calls it under the migration lock, so what it checks is what runs.
    """
    renderer = Renderer(project.cfg, project.scripts, url)
    probe = renderer.probe()
    current = read_current(probe.table or project.table or (None, DEFAULT_VERSION_TABLE))
    goal = project.goal
    position = goal.position(project.scripts, current)
    pending = [] if position != Position.BEHIND else goal.pending(project.scripts, current)
    return plan_hash([render_one(renderer, probe, rev).block for rev in pending])


def render_one(renderer: Renderer, probe: Probe, rev: str) -> Rendered:
    """Render ``rev``, or say why not without running env.py again when the probe showed it."""
    start = start_of(renderer.scripts, rev)
    if probe.error is not None:
        return Rendered(rev, start, reason=f"env.py failed in offline mode: {probe.error}")
    if not probe.ran_migrations:
        return Rendered(rev, start, reason=NOT_RUN)
    return renderer.render(rev, start)


def print_plan(
    out: TextIO,
    masker: Masker,
    current: Sequence[str],
    target: Sequence[str],
    rendered: list[Rendered],
    planned: PlanResult,
) -> None:
    """The SQL (exactly what planHash covers), then the findings and unrenderable revisions."""
    out.write(
        f"-- migrategate plan: {', '.join(current) or BASE} -> {', '.join(target) or BASE}:"
        f" {len(rendered)} pending revision(s)\n\n"
    )
    out.write("".join(r.block for r in rendered))
    for revision, reason in planned.unrenderable:
        out.write(masker(f"-- unrenderable {revision}: {reason}\n"))
    for finding in sorted(planned.findings, key=lambda f: -severity_rank(f.severity)):
        out.write(
            f"-- finding {finding.revision} {finding.severity} {finding.rule}: {finding.message}\n"
        )
    status = planned.lint_status + (f" by {planned.linter}" if planned.linter else "")
    out.write(f"-- lint: {status}\n")
    out.write(f"-- planHash: {planned.plan_hash}\n")


def summary(current: Sequence[str], target: Sequence[str], result: PlanResult) -> str:
    """The one-line message of the result."""
    if not result.pending:
        return f"nothing to plan: database at {', '.join(current) or BASE}"
    counts = result.counts()
    found = ", ".join(f"{n} {s}" for s, n in reversed(list(counts.items())) if n) or "none"
    text = (
        f"planned {len(result.pending)} revision(s) {', '.join(current) or BASE} ->"
        f" {', '.join(target)}: {result.statement_count} statement(s), findings: {found}"
    )
    if result.unrenderable:
        text += f", {len(result.unrenderable)} unrenderable"
    if result.lint_status != LintStatus.LINTED.value:
        text += f", lint {result.lint_status.lower()}"
    return clip(text + f"; planHash {result.plan_hash}", 1024)


def exit_code(result: PlanResult, fail_on: Optional[str]) -> int:
    """OK, or PENDING under ``--fail-on`` when the plan needs a person's look."""
    if fail_on is None or not result.pending:
        return ExitCode.OK
    worst = max((severity_rank(f.severity) for f in result.findings), default=-1)
    if (
        worst >= severity_rank(fail_on)
        or result.unrenderable
        or result.lint_status != LintStatus.LINTED.value
    ):
        return ExitCode.PENDING
    return ExitCode.OK
