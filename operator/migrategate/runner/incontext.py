"""Decide inside env.py's own migration context.

Alembic calls the ``fn`` of ``EnvironmentContext`` as ``fn(heads, migration_context)`` once
env.py has configured its MigrationContext and read the version table. There, and only there,
the runner sees what env.py really uses: the version table and its schema, the connection (its
database, role and server) and the current heads. The ahead check, the no-op decision and the
verification are made from that, never from a guess at env.py's text.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from alembic.script import ScriptDirectory
from sqlalchemy import text

from .contract import IfAhead
from .database import IDENTITY_SQL, Identity
from .envpy import DEFAULT_VERSION_TABLE, Table
from .errors import BadInput
from .phases import Goal
from .scripts import Position, ahead_error


@dataclass(frozen=True)
class Timeouts:
    """PostgreSQL timeouts for the migration's connections; 0 leaves the server's own."""

    lock_timeout: float = 0.0
    statement_timeout: float = 0.0

    def settings(self) -> dict[str, str]:
        """{setting: value} to apply, in PostgreSQL's units (milliseconds)."""
        values = {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout}
        return {name: f"{round(s * 1000)}ms" for name, s in values.items() if s > 0}


@dataclass(frozen=True)
class Expected:
    """What the runner knows before env.py runs: the target and where DATABASE_URL points."""

    scripts: ScriptDirectory
    goal: Goal  # the phase, its target and what Alembic upgrades to
    if_ahead: str
    timeouts: Timeouts
    runner_session: Optional[Identity]  # the session holding the migration lock


@dataclass
class InContext:
    """The ``fn`` Alembic calls from env.py's ``context.run_migrations()``.

    After the run it tells what env.py's context held: ``where`` (None if run_migrations never
    ran), ``table``, ``heads_before``, the ``position`` it found and ``heads_after`` the last step.
    """

    expected: Expected
    where: Optional[Identity] = None
    table: Table = (None, DEFAULT_VERSION_TABLE)
    heads_before: tuple[str, ...] = ()
    position: Optional[Position] = None
    heads_after: Optional[tuple[str, ...]] = None
    warnings: list[str] = field(default_factory=list)
    migration_context: Any = None  # env.py's MigrationContext, once configured

    def __call__(self, heads: Any, context: Any) -> Any:
        self.migration_context = context
        self.table = (context.version_table_schema, context.version_table)
        self.heads_before = tuple(sorted(heads))
        self.where = self._look_and_set(context.connection)
        self._check_database()
        scripts, goal = self.expected.scripts, self.expected.goal
        self.position = goal.position(scripts, self.heads_before)
        if self.position == Position.AHEAD:
            self._ahead()
            return ()
        if self.position == Position.AT_TARGET:
            return ()
        goal.ensure_ready(scripts, self.heads_before)  # --phase contract: expand must be done
        # Resolved now, so a bad target fails here rather than halfway through the steps.
        steps = scripts._upgrade_revs(goal.destination, heads)
        return self._run_then_read_heads(steps, context)

    def _look_and_set(self, connection: Any) -> Identity:
        """One round trip: who env.py's connection is, and the migration's timeouts set on it.

        ``set_config(..., false)`` is SET: it holds for the rest of the session, every revision
        of this run included, unless env.py's transaction rolls back (then the next attempt,
        on a new connection, sets it again).
        """
        settings = self.expected.timeouts.settings()
        sets = "".join(f", set_config('{name}', :{name}, false)" for name in settings)
        row = connection.execute(text(IDENTITY_SQL + sets), settings).one()
        return Identity(*row[:3])

    def _check_database(self) -> None:
        """env.py must migrate the database whose lock the runner holds."""
        runner, where = self.expected.runner_session, self.where
        if runner is None or where is None:
            return
        if where.database != runner.database:
            raise BadInput(
                f"env.py migrates database {where.database!r} but DATABASE_URL names"
                f" {runner.database!r}: the migration lock, taken in {runner.database!r}, would"
                f" not serialise migrations of {where.database!r}; make env.py use"
                " DATABASE_URL_SYNC or sqlalchemy.url, or point DATABASE_URL at that database"
            )
        if where.server != runner.server:
            self.warnings.append(
                f"env.py reached the server at {where.server}, DATABASE_URL at {runner.server}:"
                " if these are two servers, the migration lock does not serialise this migration"
            )

    def _ahead(self) -> None:
        """The database holds revisions the scripts do not know: fail now, or leave it be."""
        expected = self.expected
        if expected.if_ahead == IfAhead.FAIL.value:
            raise ahead_error(expected.scripts, self.heads_before, expected.goal.target)

    def _run_then_read_heads(self, steps: list[Any], context: Any) -> Iterator[Any]:
        """Yield Alembic's steps; after the last one, read the heads in env.py's transaction."""
        yield from steps
        self.heads_after = tuple(sorted(context.get_current_heads()))
