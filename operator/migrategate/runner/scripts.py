"""What the image's Alembic project says: config, target heads, where the database stands.

Nothing here touches the database; the functions take revision ids read elsewhere.
"""

import argparse
import enum
import os
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Optional

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import MultipleHeads, ResolutionError, RevisionError
from alembic.util.exc import CommandError

from .errors import BadInput, first_line


class Position(str, enum.Enum):
    """Where the database stands relative to the target."""

    AT_TARGET = "at-target"
    BEHIND = "behind"  # an upgrade is pending
    AHEAD = "ahead"  # it holds revisions the scripts do not know, or past the target


def load_config(path: str, section: str, x_args: Iterable[str] = ()) -> Config:
    """The project's alembic.ini as an Alembic ``Config``, with ``-x`` arguments attached."""
    if not os.path.isfile(path):
        raise BadInput(
            f"Alembic config {path!r} not found in {os.getcwd()}:"
            " run from the project directory or pass --config"
        )
    cmd_opts = argparse.Namespace(x=list(x_args))
    cfg = Config(path, ini_section=section, cmd_opts=cmd_opts)
    if not cfg.file_config.has_section(section):
        raise BadInput(f"{path!r} has no [{section}] section: pass the right one with --section")
    return cfg


def load_scripts(cfg: Config) -> ScriptDirectory:
    """The project's revision scripts."""
    try:
        return ScriptDirectory.from_config(cfg)
    except (CommandError, RevisionError) as exc:
        raise BadInput(f"cannot load the Alembic scripts: {first_line(exc)}") from None


def resolve_target(scripts: ScriptDirectory, target: str) -> tuple[str, ...]:
    """The revision ids ``target`` names (``head`` must be a single head)."""
    try:
        found = scripts.get_revisions(target)
    except (MultipleHeads, ResolutionError, RevisionError, CommandError) as exc:
        # ScriptDirectory wraps MultipleHeads in a CommandError; recognise either.
        if isinstance(exc, MultipleHeads) or "multiple head" in str(exc).lower():
            heads = ", ".join(sorted(scripts.get_heads()))
            raise BadInput(
                f"the scripts have multiple heads ({heads}): merge them with"
                " `alembic merge heads`, or pass --target heads or one revision"
            ) from None
        raise BadInput(
            f"unknown target revision {target!r}: pass head, heads or a revision id"
            " that exists in this image's scripts"
        ) from None
    return tuple(sorted(s.revision for s in found if s is not None))


def ancestry(scripts: ScriptDirectory, revisions: Iterable[str]) -> set[str]:
    """The revisions and all their ancestors."""
    seen: set[str] = set()
    for revision in revisions:
        seen.update(s.revision for s in scripts.walk_revisions(base="base", head=revision))
    return seen


def known_revisions(scripts: ScriptDirectory) -> set[str]:
    """Every revision id in the scripts."""
    return {s.revision for s in scripts.walk_revisions()}


def compare(scripts: ScriptDirectory, current: Iterable[str], target: Iterable[str]) -> Position:
    """Compare the database's revisions with the target's."""
    current_set, target_set = set(current), set(target)
    if current_set == target_set:
        return Position.AT_TARGET
    if not current_set <= known_revisions(scripts):
        return Position.AHEAD
    if current_set <= ancestry(scripts, target_set):
        return Position.BEHIND
    return Position.AHEAD


def unknown_revisions(scripts: ScriptDirectory, current: Iterable[str]) -> list[str]:
    """The database revisions the scripts do not know."""
    return sorted(set(current) - known_revisions(scripts))


def ahead_message(scripts: ScriptDirectory, current: Iterable[str], target: Iterable[str]) -> str:
    """What the runner says about a database ahead of this image's scripts."""
    current = list(current)
    unknown = unknown_revisions(scripts, current) or current
    return (
        f"database is at {', '.join(unknown)}, ahead of this image's scripts"
        f" (target {', '.join(target) or 'base'}); nothing was changed"
    )


def ahead_error(
    scripts: ScriptDirectory, current: Iterable[str], target: Iterable[str]
) -> BadInput:
    """The error for a database ahead of the scripts under ``--if-ahead fail``."""
    return BadInput(
        ahead_message(scripts, current, target)
        + ": deploy an image that has these revisions, or use --if-ahead succeed"
    )


def pending_revisions(
    scripts: ScriptDirectory, current: Iterable[str], target: Iterable[str]
) -> list[str]:
    """Revisions an upgrade from ``current`` to ``target`` applies, oldest first."""
    done = ancestry(scripts, current)
    ordered: list[str] = []
    for head in sorted(target):
        for s in scripts.walk_revisions(base="base", head=head):
            if s.revision not in done and s.revision not in ordered:
                ordered.append(s.revision)
    return list(reversed(ordered))


def env_py_source(scripts: ScriptDirectory) -> str:
    """The text of the project's env.py ('' if it cannot be read)."""
    try:
        with open(os.path.join(scripts.dir, "env.py"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def failing_revision(exc: BaseException, scripts: ScriptDirectory) -> Optional[str]:
    """The revision whose upgrade() raised ``exc``, from the traceback's frames."""
    by_path = {os.path.realpath(s.path): s.revision for s in scripts.walk_revisions()}
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _revision_in_traceback(current.__traceback__, by_path)
        if found:
            return found
        current = current.__cause__ or current.__context__
    return None


def _revision_in_traceback(tb: Optional[TracebackType], by_path: dict[str, str]) -> Optional[str]:
    """The innermost revision file among the traceback's frames."""
    found = None
    for frame, _ in traceback.walk_tb(tb):
        revision = by_path.get(os.path.realpath(frame.f_code.co_filename))
        if revision:
            found = revision
    return found
