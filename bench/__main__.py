"""``python -m bench [NAME ...] [-- ARGS]``: run the benchmarks in bench/<NAME>_bench.py.

With no name it runs every ``*_bench.py`` module here, in name order. Each
module exposes ``main(argv) -> int``; arguments after ``--`` go to it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem[: -len("_bench")] for p in HERE.glob("*_bench.py"))


def main(argv: list[str]) -> int:
    names, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
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
