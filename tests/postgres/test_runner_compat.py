"""The runner under an older stack: Python 3.9 with SQLAlchemy 1.4, as in older application images.

Needs an interpreter with SQLAlchemy 1.4, Alembic and a driver installed, named by
MIGRATEGATE_COMPAT_PYTHON (e.g. a python3.9 venv); skipped, saying so, without it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pgserver
import pytest
import runnerkit as kit
import samples
from migrategate.runner.contract import ResultKey

pytestmark = pytest.mark.postgres

COMPAT_PYTHON = os.environ.get("MIGRATEGATE_COMPAT_PYTHON", "")
OPERATOR_DIR = Path(__file__).resolve().parents[2] / "operator"


def compat_versions() -> str:
    if not COMPAT_PYTHON:
        return ""
    probe = "import sys, sqlalchemy; print(sys.version.split()[0], sqlalchemy.__version__)"
    done = subprocess.run([COMPAT_PYTHON, "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


@pytest.mark.skipif(
    not compat_versions(), reason="MIGRATEGATE_COMPAT_PYTHON (python with SQLAlchemy 1.4) not set"
)
@pytest.mark.parametrize("driver", ["auto", "asyncpg"])
def test_runner_on_python39_sqlalchemy14(
    driver: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    (app / samples.BASE_14_PATH).write_text(samples.BASE_14)
    result = tmp_path / "result.json"
    env = {**kit.base_env(pg_server.url(pg_database)), "PYTHONPATH": str(OPERATOR_DIR)}
    argv = [COMPAT_PYTHON, "-m", "migrategate.runner", "migrate", "--driver", driver]
    for _attempt in ("first", "again"):  # the second run takes the fast path
        done = kit.run_ok([*argv, "--result-file", str(result)], app, env)
        kit.assert_no_password(done.stdout, done.stderr, result.read_text())
    assert kit.versions(pg_server, pg_database) == ["0005"]
    assert json.loads(result.read_text())[ResultKey.OUTCOME] == "UpToDate"
