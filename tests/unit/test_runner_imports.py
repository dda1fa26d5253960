"""The runner must run in application images: stdlib, SQLAlchemy, Alembic and a driver only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OPERATOR_DIR = Path(__file__).resolve().parents[2] / "operator"
RUNNER_DIR = OPERATOR_DIR / "migrategate" / "runner"
FORBIDDEN = ("kopf", "pydantic", "pydantic_core", "kubernetes", "kubernetes_asyncio", "yaml")

PROBE = f"""
import sys
import migrategate.runner.cli, migrategate.runner.commands, migrategate.runner.upgrade
import migrategate.__main__
from migrategate.runner.cli import main
import io
main(["url"], stream=io.StringIO(), environ={{"DATABASE_URL": "postgresql+asyncpg://a:b@h/d"}})
bad = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(",".join(bad))
"""


def test_runner_imports_no_operator_dependencies() -> None:
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_python_m_runner_works() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(OPERATOR_DIR),
        "DATABASE_URL": "postgresql+asyncpg://a:b@h/d",
    }
    done = subprocess.run(
        [sys.executable, "-m", "migrategate.runner", "url", "--driver", "psycopg2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgresql+psycopg2://a:***@h/d"


PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python3.9")


@pytest.mark.skipif(not PY39.exists(), reason="no Python 3.9 interpreter on this machine")
def test_runner_compiles_under_python_39() -> None:
    files = sorted(str(p) for p in RUNNER_DIR.glob("*.py"))
    code = "import ast, sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')\n"
    done = subprocess.run([str(PY39), "-c", code, *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
