"""``python -m bench [NAME ...] [-- ARGS]``: run the benchmarks in bench/<NAME>_bench.py.

With no name it runs every ``*_bench.py`` module here, in name order. Each
module exposes ``main(argv) -> int``; arguments after ``--`` go to it. They import
the test harness, so PYTHONPATH must hold tests and tests/cluster (``make bench``
sets it): ``PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem[: -len("_bench")] for p in HERE.glob("*_bench.py"))


def main(argv: list[str]) -> int:
    names, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    if not all(importlib.util.find_spec(m) for m in ("pgserver", "localstack")):
        print("bench: the test harness is not importable; run with PYTHONPATH=tests:tests/cluster")
        return 2
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")
        return 2
    status = 0
    for name in names or available():
        print(f"## {name}")
        module = importlib.import_module(f"bench.{name}_bench")
        status = max(status, int(module.main(extra) or 0))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
