"""Runner benchmark: ``migrategate migrate`` against plain ``alembic upgrade head``.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench runner -- \
        [--runs 7] [--chain 200] [--json out.json]

Same project for both: seed 000's own env.py (copied from
tests/samples/seed000_env_sync_url; it reads DATABASE_URL_SYNC), with an
app package that imports a moderately heavy module tree (pydantic-settings, the
SQLAlchemy ORM and asyncio extension, asyncpg, 40 ORM models). Plain alembic
gets DATABASE_URL_SYNC and PYTHONPATH=. as its users must set them;
migrategate gets only DATABASE_URL. Each run is a fresh process, timed wall
clock; the two commands alternate so machine load hits both alike.

- no-op: the database is already at head (goal: ratio <= 0.8);
- chain: ``--chain`` revisions from an empty database (goal: ratio <= 1.10).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pgserver
import samples

BIN = Path(sys.executable).parent
RUNNER_SRC = "MIGRATEGATE_BENCH_RUNNER_SRC"
GOALS = {"no-op": 0.8, "chain": 1.10}
HEADER = (
    "| scenario | migrategate (median s) | alembic (median s) | ratio | goal | met | CPU ratio |"
)

# The sample's file itself, not a copy kept here: the bench times the seed's env.py.
ENV_PY = samples.SAMPLES_DIR / "seed000_env_sync_url" / "alembic" / "env.py"

ALEMBIC_INI = """[alembic]
script_location = alembic

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""

DATABASE_PY = '''"""A moderately heavy application module tree, as real apps import from env.py."""
import asyncpg  # noqa: F401
from pydantic_settings import BaseSettings
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase


class Settings(BaseSettings):
    database_url: str = "postgresql+asyncpg://localhost/app"


settings = Settings()
engine = create_async_engine(settings.database_url)
Session = async_sessionmaker(engine)


class Base(DeclarativeBase):
    pass
'''

MODEL = """

class Model{i}(Base):
    __tablename__ = "model_{i}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
"""


def revision(n: int, rev: str, down: str | None) -> str:
    """Revision ``n`` of the chain: a table with one row."""
    return samples.revision_source(
        rev,
        down,
        f"""
        op.create_table("t_{n}", sa.Column("id", sa.Integer, primary_key=True))
        op.execute("INSERT INTO t_{n} (id) VALUES (1)")
        """,
        downgrade=f'op.drop_table("t_{n}")',
    )


def build_project(root: Path, chain: int) -> Path:
    """Write the benchmark project: env.py, a heavy app package and ``chain`` revisions."""
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    shutil.copy(ENV_PY, root / "alembic" / "env.py")
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "database.py").write_text(DATABASE_PY)
    models = "from sqlalchemy import JSON, Integer, String\n"
    models += "from sqlalchemy.orm import Mapped, mapped_column\n\nfrom app.database import Base\n"
    models += "".join(MODEL.format(i=i) for i in range(40))
    (root / "app" / "models.py").write_text(models)
    down = None
    for n in range(1, chain + 1):
        rev = f"r{n:04d}"
        (root / "alembic" / "versions" / f"{rev}.py").write_text(revision(n, rev, down))
        down = rev
    return root


def commands(pg: pgserver.PgServer, db: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The two contenders, each with the environment its users give it.

    With $MIGRATEGATE_BENCH_RUNNER_SRC (a checkout's ``operator`` folder) migrategate
    runs that checkout's runner instead of the installed one (on its PYTHONPATH):
    to measure a commit while the installed, editable one is being changed."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": pg.url(db)}
    sync = pg.url(db, driver="postgresql+psycopg")
    src = os.environ.get(RUNNER_SRC)
    return {
        "migrategate": (
            [str(BIN / "migrategate"), "migrate"],
            {**base, "PYTHONPATH": src} if src else base,
        ),
        "alembic": (
            [str(BIN / "alembic"), "upgrade", "head"],
            {**base, "DATABASE_URL_SYNC": sync, "PYTHONPATH": "."},
        ),
    }


def timed(argv: list[str], env: dict[str, str], cwd: Path, cpu: list[float] | None = None) -> float:
    """Wall-clock seconds of one run; its client CPU seconds (user + sys) go to ``cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


Times = dict[str, list[float]]


def bench_noop(pg: pgserver.PgServer, project: Path, runs: int) -> tuple[Times, Times]:
    """(wall, cpu) seconds per contender, the database at head throughout."""
    db = pg.create_database()
    contenders = commands(pg, db)
    timed(*contenders["alembic"], project)  # bring it to head once
    wall: Times = {name: [] for name in contenders}
    cpu: Times = {name: [] for name in contenders}
    for _ in range(runs):
        for name, (argv, env) in contenders.items():
            wall[name].append(timed(argv, env, project, cpu[name]))
    pg.drop_database(db)
    return wall, cpu


def bench_chain(pg: pgserver.PgServer, project: Path, runs: int) -> tuple[Times, Times]:
    """(wall, cpu) seconds per contender, each run on a fresh empty database."""
    wall: Times = {"migrategate": [], "alembic": []}
    cpu: Times = {"migrategate": [], "alembic": []}
    for _ in range(runs):
        for name in wall:
            db = pg.create_database()
            argv, env = commands(pg, db)[name]
            wall[name].append(timed(argv, env, project, cpu[name]))
            pg.drop_database(db)
    return wall, cpu


def summarise(measured: tuple[Times, Times], goal: float) -> dict[str, object]:
    """Medians and ratios; the goal is on wall clock, client CPU is shown as a steadier aside."""
    wall, cpu = measured
    mg, al = statistics.median(wall["migrategate"]), statistics.median(wall["alembic"])
    mg_cpu, al_cpu = statistics.median(cpu["migrategate"]), statistics.median(cpu["alembic"])
    return {
        "migrategate_median_s": round(mg, 3),
        "alembic_median_s": round(al, 3),
        "ratio": round(mg / al, 3),
        "goal": goal,
        "met": mg / al <= goal,
        "cpu_ratio": round(mg_cpu / al_cpu, 3),
        "runs": len(wall["migrategate"]),
        "wall_s": {k: [round(v, 3) for v in vals] for k, vals in wall.items()},
    }


def arguments(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    runs: int,
    runs_help: str,
    chain_help: str,
) -> argparse.Namespace:
    """``argv`` parsed with --runs (default ``runs``), --chain and --json added to ``parser``."""
    parser.add_argument("--runs", type=int, default=runs, help=runs_help)
    parser.add_argument("--chain", type=int, default=200, help=chain_help)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


@contextlib.contextmanager
def project_on_server(chain: int) -> Iterator[tuple[pgserver.PgServer, Path]]:
    """A PostgreSQL server and ``build_project``'s project of ``chain`` revisions, in a
    temporary directory; both gone afterwards."""
    with pgserver.running_server() as pg, tempfile.TemporaryDirectory() as tmp:
        yield pg, build_project(Path(tmp) / "app", chain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench runner", description=__doc__.splitlines()[0])
    runs_help = "runs per command (median of these)"
    args = arguments(parser, argv, 7, runs_help, "revisions in the chain")
    with project_on_server(args.chain) as (pg, project):
        figures = {
            "no-op": summarise(bench_noop(pg, project, args.runs), GOALS["no-op"]),
            "chain": summarise(bench_chain(pg, project, args.runs), GOALS["chain"]),
        }
    figures["chain"]["revisions"] = args.chain
    print(HEADER)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        row = [name, f["migrategate_median_s"], f["alembic_median_s"], f["ratio"]]
        row += [f"<= {f['goal']}", "yes" if f["met"] else "no", f["cpu_ratio"]]
        print("| " + " | ".join(str(c) for c in row) + " |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
