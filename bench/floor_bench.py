"""The runner's no-op against the floor: a bare Python process that reads the one row.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench floor -- \
        [--runs 9] [--chain 200] [--json out.json]

The runner bench's project (bench/runner_bench.py: a seed-000-style env.py, a
heavy app package, ``--chain`` revisions), its database at head throughout.
Three contenders alternate, each run a fresh process timed by wall clock:

- migrategate: ``migrategate migrate`` with DATABASE_URL only;
- alembic: ``alembic upgrade head`` with DATABASE_URL_SYNC and PYTHONPATH=.;
- floor: ``python -c`` that imports psycopg (the driver the runner picks here),
  connects with the same server, role and database, and reads alembic_version:
  no SQLAlchemy, no Alembic, nothing of the project. Nothing cheaper can still
  tell that the database is at head.

Reported: medians, the ratio of migrategate to the floor (the goal: <= 2) and to
plain alembic, and the same ratios of client CPU seconds (user + sys), which the
machine's load disturbs less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import pgserver

from bench.runner_bench import BIN, arguments, commands, project_on_server, timed

GOAL_FLOOR_RATIO = 2.0
FLOOR = """\
import os
import psycopg
with psycopg.connect(os.environ["FLOOR_URL"]) as conn:
    conn.execute("SELECT version_num FROM alembic_version").fetchall()
"""


def contenders(pg: pgserver.PgServer, db: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """migrategate and alembic as the runner bench runs them, and the floor."""
    floor_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FLOOR_URL": pg.url(db, driver="postgresql"),
    }
    return {**commands(pg, db), "floor": ([str(BIN / "python"), "-c", FLOOR], floor_env)}


def measure(pg: pgserver.PgServer, project: Path, runs: int) -> dict[str, object]:
    db = pg.create_database()
    runs_of = contenders(pg, db)
    timed(*runs_of["alembic"], project)  # bring it to head once
    wall: dict[str, list[float]] = {name: [] for name in runs_of}
    cpu: dict[str, list[float]] = {name: [] for name in runs_of}
    for _ in range(runs):
        for name, (argv, env) in runs_of.items():
            wall[name].append(timed(argv, env, project, cpu[name]))
    pg.drop_database(db)
    median = {name: statistics.median(values) for name, values in wall.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    to_floor = median["migrategate"] / median["floor"]
    return {
        "median_s": {name: round(v, 3) for name, v in median.items()},
        "median_cpu_s": {name: round(v, 3) for name, v in median_cpu.items()},
        "migrategate_to_floor": round(to_floor, 2),
        "migrategate_to_alembic": round(median["migrategate"] / median["alembic"], 3),
        "alembic_to_floor": round(median["alembic"] / median["floor"], 2),
        "cpu_migrategate_to_floor": round(median_cpu["migrategate"] / median_cpu["floor"], 2),
        "goal_migrategate_to_floor": GOAL_FLOOR_RATIO,
        "met": to_floor <= GOAL_FLOOR_RATIO,
        "runs": runs,
        "wall_s": {k: [round(v, 3) for v in values] for k, values in wall.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench floor", description=__doc__.splitlines()[0])
    args = arguments(parser, argv, 9, "runs per contender", "revisions in the project")
    with project_on_server(args.chain) as (pg, project):
        figures = measure(pg, project, args.runs)
    figures["revisions"] = args.chain
    m, c = figures["median_s"], figures["median_cpu_s"]
    print("| contender | median s | median CPU s |")
    print("| --- | --- | --- |")
    for name in ("migrategate", "alembic", "floor"):
        print(f"| {name} | {m[name]} | {c[name]} |")  # type: ignore[index]
    print(
        f"migrategate / floor {figures['migrategate_to_floor']} (goal <= {GOAL_FLOOR_RATIO}, "
        f"{'met' if figures['met'] else 'not met'}; CPU {figures['cpu_migrategate_to_floor']}), "
        f"migrategate / alembic {figures['migrategate_to_alembic']}, "
        f"alembic / floor {figures['alembic_to_floor']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
