"""Helpers for running the real ``migrategate`` CLI in a subprocess against a sample project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import pgserver
from migrategate.runner.contract import ErrorClass, ExitCode, Outcome, ResultKey
from sqlalchemy.engine import URL

VENV_BIN = Path(sys.executable).parent
MIGRATEGATE = str(VENV_BIN / "migrategate")  # the console script: it does not put cwd on sys.path
BLOCKED_DRIVERS = ("psycopg", "psycopg2", "psycopg_binary", "psycopg_c")

SITECUSTOMIZE = '''
"""Test-only: make some modules unimportable, as in an image that lacks them."""
import sys


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(name + " is blocked in this test environment")
        return None


sys.meta_path.insert(0, _Block())
'''


@dataclass
class Run:
    """One finished runner process."""

    code: int
    stdout: str
    stderr: str
    result: dict

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def base_env(url: str, marker: Path | None = None) -> dict[str, str]:
    """The environment an application pod would have: DATABASE_URL only (plus PATH)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url}
    if marker is not None:
        env["SAMPLE_IMPORT_MARKER"] = str(marker)
    return env


def asyncpg_only(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """``env`` with psycopg and psycopg2 made unimportable (a sitecustomize on PYTHONPATH)."""
    return without_modules(env, tmp / "block-sync-drivers", BLOCKED_DRIVERS)


def without_modules(env: dict[str, str], folder: Path, modules: Iterable[str]) -> dict[str, str]:
    """``env`` in which ``modules`` (top-level names) cannot be imported."""
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=tuple(modules)))
    return {**env, "PYTHONPATH": str(folder)}


def start(
    cwd: Path, env: dict[str, str], *args: str, result: Path | None = None
) -> subprocess.Popen:
    """Start ``migrategate <args>`` in ``cwd``."""
    argv = [MIGRATEGATE, *args]
    if result is not None:
        argv += ["--result-file", str(result)]
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, result: Path | None, timeout: float = 120) -> Run:
    stdout, stderr = proc.communicate(timeout=timeout)
    data = json.loads(result.read_text()) if result is not None and result.exists() else {}
    return Run(proc.returncode, stdout, stderr, data)


def run(cwd: Path, env: dict[str, str], *args: str, timeout: float = 120) -> Run:
    """Run ``migrategate <args> --result-file`` in ``cwd`` and collect everything it left."""
    result = cwd.parent / f"result-{os.urandom(4).hex()}.json"
    return finish(start(cwd, env, *args, result=result), result, timeout)


def migrate_ok(cwd: Path, env: dict[str, str], *args: str) -> Run:
    """Run ``migrategate migrate <args>`` in ``cwd``; it must exit 0."""
    done = run(cwd, env, "migrate", *args)
    assert done.code == 0, done.output
    return done


def run_ok(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (another Python, or alembic by hand) in ``cwd``; it must exit 0."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def ahead_runs(newer: Path, older: Path, env: dict[str, str]) -> tuple[Run, Run]:
    """Migrate with ``newer``, then with ``older``: by default (succeed with a warning) and
    with ``--if-ahead fail`` (exit 2); the two runs of ``older``."""
    migrate_ok(newer, env)
    default = run(older, env, "migrate")
    assert default.code == 0, default.output
    assert default.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value
    assert "ahead of this image's scripts" in default.result[ResultKey.WARNINGS][0]
    assert "warning: database is at 0004" in default.stdout
    strict = run(older, env, "migrate", "--if-ahead", "fail")
    assert strict.code == ExitCode.BAD_INPUT, strict.output
    assert "ahead of this image's scripts" in strict.stdout
    for done in (default, strict):  # the head v1's scripts do not know, for the operator
        assert done.result[ResultKey.UNKNOWN_REVISIONS] == ["0004"], done.result
    assert_no_password(default, strict)
    return default, strict


def failed_upgrade(good: Path, broken: Path, env: dict[str, str]) -> Run:
    """Migrate with ``good`` (v1, head 0003), then with ``broken`` (v2-broken, whose 0004
    fails); the failed run, which must exit 4 naming 0004, in one line without a password."""
    migrate_ok(good, env)
    failed = run(broken, env, "migrate")
    assert failed.code == ExitCode.MIGRATION_FAILED, failed.output
    assert failed.result[ResultKey.FAILED_REVISION] == "0004"
    assert failed.result[ResultKey.ERROR_CLASS] == ErrorClass.MIGRATION_FAILED.value
    assert failed.result[ResultKey.FROM_REVISIONS] == ["0003"]
    assert failed.result[ResultKey.TO_REVISIONS] == ["0003"]
    assert "revision 0004 failed" in failed.stdout and "division by zero" in failed.stdout
    assert "Traceback" not in failed.output
    assert_no_password(failed)
    return failed


def password_spellings() -> list[str]:
    """Every way the test passwords could appear in text."""
    spellings = set()
    for password in (pgserver.APP_PASSWORD, pgserver.SPECIAL_PASSWORD):
        spellings |= {password, quote(password, safe=""), quote_plus(password), quote(password)}
        rendered = URL.create("postgresql", username="u", password=password, host="h")
        spellings.add(rendered.render_as_string(hide_password=False)[len("postgresql://u:") : -2])
    return sorted(spellings)


def assert_no_password(*texts: object) -> None:
    """No test password, raw or encoded, in any of ``texts`` (strings, dicts, Runs)."""
    for text in texts:
        if isinstance(text, Run):
            blob = text.output + json.dumps(text.result)
        elif isinstance(text, dict):
            blob = json.dumps(text)
        else:
            blob = str(text)
        for spelling in password_spellings():
            assert spelling not in blob, "a password leaked into the output"


def versions(pg: pgserver.PgServer, db: str) -> list[str]:
    """The revisions recorded in the database ([] if none)."""
    exists = pg.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL", db)[0][0]
    if not exists:
        return []
    return sorted(row[0] for row in pg.execute("SELECT version_num FROM alembic_version", db))


def assert_left_at(pg: pgserver.PgServer, db: str, revisions: list[str], *runs: object) -> None:
    """The database records exactly ``revisions``, and no password leaked into ``runs``."""
    assert versions(pg, db) == revisions
    assert_no_password(*runs)


def marker_lines(marker: Path) -> int:
    """How many times the sample's app package (so env.py) was imported."""
    return len(marker.read_text().splitlines()) if marker.exists() else 0
