"""The quick path: a database already at the target, told without Alembic or SQLAlchemy.

Most runs change nothing: every pod start in initContainer mode, every re-sync. Importing
Alembic, SQLAlchemy and every revision file is most of such a run's time. So ``migrate`` and
``wait`` first try this: read alembic.ini as Alembic does (configparser with ``here``), read
each revision file's ids from its syntax tree (never run), and read the version table with
psycopg. The run ends here only when the database holds exactly the target's heads. Whatever
this path cannot decide for sure (another layout, driver or version table, a URL with query
parameters, any error at all) goes to the full path, which decides and says why.
"""

import ast
import configparser
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from .contract import WHOLE_TARGETS, Driver, Phase, phase_keys
from .envpy import DEFAULT_VERSION_TABLE, version_table
from .result import AT_TARGET_UNRUN, Result, at_target_of_wait
from .settings import Settings

QUICK_COMMANDS = ("migrate", "wait")
ASYNC_SCHEME = "postgresql+asyncpg://"
CONNECT_TIMEOUT_SECONDS = 2  # libpq's least; a slower server is the full path's to wait for
# Alembic's rule for a revision file's name (script/base.py, source files only).
REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
# What a revision file declares, as module-level names (Alembic reads them off the module).
DECLARED = ("revision", "down_revision", "branch_labels", "depends_on")
# alembic.ini options under which other files are revisions: the full path reads those.
OTHER_LAYOUTS = ("version_locations", "recursive_version_locations", "sourceless")


class Undecided(Exception):
    """The quick path cannot tell for sure; the full path decides."""


@dataclass(frozen=True)
class RevisionIds:
    """The ids a revision file declares, read from its syntax tree."""

    revision: str
    down_revisions: tuple[str, ...]
    branch_labels: tuple[str, ...]
    depends_on: tuple[str, ...]


def at_target(command: str, settings: Settings, environ: Mapping[str, str]) -> Optional[Result]:
    """The result of a run whose database is surely at its target already; None otherwise."""
    try:
        if command not in QUICK_COMMANDS or not quick_settings(settings):
            return None
        # The database first: a new one (no version table) is decided without parsing a file.
        current = read_heads(environ.get(settings.database_url_env, ""))
        if current != target_heads(settings):
            return None
    except Exception:  # whatever it was, the full path meets it again and reports it
        return None
    phase = settings.phase or Phase.ALL.value
    phases = phase_keys(phase, False, settings.contract_branch, current, ())
    known = Result(driver=Driver.PSYCOPG.value, target_revisions=current, phases=phases)
    message = AT_TARGET_UNRUN if command == "migrate" else at_target_of_wait(current)
    return known.at(current).up_to_date(message)


def quick_settings(settings: Settings) -> bool:
    """Settings under which the quick path can decide: no -x, a whole target, psycopg."""
    return (
        not settings.x_args
        and settings.target in WHOLE_TARGETS
        and settings.phase in (None, Phase.ALL.value, Phase.EXPAND.value)
        and settings.driver in (Driver.AUTO.value, Driver.PSYCOPG.value)
        and importlib.util.find_spec("psycopg") is not None
    )


def target_heads(settings: Settings) -> tuple[str, ...]:
    """The heads ``--target`` names, when the scripts are one plain versions directory."""
    location = script_location(settings.config, settings.section)
    with open(os.path.join(location, "env.py"), encoding="utf-8") as env_py:
        if version_table(env_py.read()) != (None, DEFAULT_VERSION_TABLE):
            raise Undecided("env.py names another version table")
    revisions = read_revisions(os.path.join(location, "versions"))
    if any(settings.contract_branch in r.branch_labels or r.depends_on for r in revisions):
        raise Undecided("a contract branch or dependencies: phases.py decides")
    heads = heads_of(revisions)
    if not heads or (settings.target == "head" and len(heads) > 1):
        raise Undecided("no revisions, or several heads for `head`")
    return heads


def script_location(config: str, section: str) -> str:
    """``script_location`` from alembic.ini, read as Alembic's Config reads it."""
    here = os.path.dirname(os.path.abspath(config))
    parser = configparser.ConfigParser({"here": here})
    if not parser.read(config):
        raise Undecided(f"no {config}")
    options = parser[section]
    location = options.get("script_location")
    if not location or any(name in options for name in OTHER_LAYOUTS):
        raise Undecided("no script_location, or revisions outside its versions directory")
    if ":" in location and not os.path.isabs(location):
        raise Undecided("a package resource")
    return location


def read_revisions(versions: str) -> list[RevisionIds]:
    """Every revision file's ids; Undecided if one does not declare them as plain literals."""
    names = sorted(n for n in os.listdir(versions) if REVISION_FILE.match(n))
    files = [os.path.join(versions, n) for n in names]
    revisions = [revision_ids(path) for path in files if os.path.isfile(path)]
    if len({r.revision for r in revisions}) != len(revisions):
        raise Undecided("a revision id twice")
    return revisions


def revision_ids(path: str) -> RevisionIds:
    """The ids assigned at the top of one revision file, each assigned once."""
    with open(path, "rb") as source:
        tree = ast.parse(source.read(), filename=path)
    stores = [
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    ]
    if any(stores.count(name) > 1 for name in DECLARED):
        raise Undecided(f"{path}: an id assigned more than once")
    declared = [found for found in map(_declared, tree.body) if found is not None]
    values = {name: ast.literal_eval(value) for name, value in declared}
    revision = values.get("revision")
    if not isinstance(revision, str) or "down_revision" not in values:
        raise Undecided(f"{path}: no literal revision and down_revision")
    return RevisionIds(
        revision,
        _ids(values["down_revision"]),
        _ids(values.get("branch_labels")),
        _ids(values.get("depends_on")),
    )


def _declared(statement: ast.stmt) -> Optional[tuple[str, ast.expr]]:
    """(name, value) of ``name = value`` or ``name: T = value`` for a DECLARED name."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target, value = statement.targets[0], statement.value
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target, value = statement.target, statement.value
    else:
        return None
    if isinstance(target, ast.Name) and target.id in DECLARED:
        return target.id, value
    return None


def _ids(value: Any) -> tuple[str, ...]:
    """None, one id or a sequence of ids as a tuple; Undecided for anything else."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Undecided(f"not revision ids: {value!r}")


def heads_of(revisions: Iterable[RevisionIds]) -> tuple[str, ...]:
    """Revisions no other revision names as its down_revision, sorted."""
    revisions = list(revisions)
    known = {r.revision for r in revisions}
    below = {d for r in revisions for d in r.down_revisions}
    if not below <= known:
        raise Undecided("a down_revision that no file declares")
    return tuple(sorted(known - below))


def read_heads(async_url: str) -> tuple[str, ...]:
    """The version table's revisions, sorted, read with psycopg from the async URL."""
    raw = async_url.strip()
    if not raw.startswith(ASYNC_SCHEME) or "?" in raw or "," in raw:
        raise Undecided("not a plain postgresql+asyncpg URL")
    import psycopg  # only on this path: the full path may run with another driver

    conninfo = "postgresql://" + raw[len(ASYNC_SCHEME) :]
    with psycopg.connect(
        conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
    ) as conn:
        rows = conn.execute(f"SELECT version_num FROM {DEFAULT_VERSION_TABLE}").fetchall()
    return tuple(sorted(str(row[0]) for row in rows))
