"""``migrategate plan`` against a real PostgreSQL: every seed style, squawk, the hash, no writes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pgserver
import pytest
import runnerkit as kit
import samples
from migrategate.runner import contract
from migrategate.runner.contract import (
    ExitCode,
    FindingKey,
    LintStatus,
    Outcome,
    PlanKey,
    ResultKey,
    Severity,
    UnrenderableKey,
)
from migrategate.runner.database import lock_key

pytestmark = pytest.mark.postgres

RENDERING_STYLES = [s for s in samples.STYLES if s != "seed001_async_settings"]
INDEX_RULE = "require-concurrent-index-creation"
REPO_ROOT = Path(__file__).resolve().parents[2]

READS_DATABASE = samples.revision_source(
    "0006",
    "0005",
    """
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM items")).scalar()
    op.execute(sa.text(f"COMMENT ON TABLE items IS 'had {count} rows'"))
    """,
    doc="count the items: reads the live database, so it cannot be rendered offline",
)


def migrated(pg: pgserver.PgServer, db: str, style: str, version: str, tmp: Path) -> None:
    """Bring the database to ``version``'s head with the real runner."""
    app = samples.materialize(style, version, tmp / f"migrate-{version}")
    kit.migrate_ok(app, kit.base_env(pg.url(db)))


AppEnv = tuple[Path, dict[str, str]]  # a sample project, and the environment to run it in


@pytest.fixture
def v3_over_v2(pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path) -> AppEnv:
    """Sample v3 (0005: CREATE INDEX without CONCURRENTLY pending) over a database at v2."""
    migrated(pg_server, pg_database, "seed004_ini_url", "v2", tmp_path)
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    return app, kit.base_env(pg_server.url(pg_database))


def findings_of(run: kit.Run, rule: str) -> list[dict]:
    return [f for f in run.result[PlanKey.FINDINGS] if f[FindingKey.RULE] == rule]


def snapshot(pg: pgserver.PgServer, db: str) -> list:
    """What plan must leave alone: relations, columns, comments, versions, rows, indexes."""
    return [
        pg.execute(
            "SELECT c.relname, c.relkind, obj_description(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            " ORDER BY 1",
            db,
        ),
        pg.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM"
            " information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
            db,
        ),
        pg.execute("SELECT version_num FROM alembic_version", db),
        pg.execute("SELECT * FROM items ORDER BY id", db),
        pg.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items'", db),
    ]


@pytest.mark.parametrize("style", list(samples.STYLES))
def test_every_seed_style_renders_or_says_why(
    style: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    migrated(pg_server, pg_database, style, "v1", tmp_path)
    app = samples.materialize(style, "v3", tmp_path / "app")
    done = kit.run(app, kit.base_env(pg_server.url(pg_database)), "plan")

    assert done.code == ExitCode.OK, done.output
    result = done.result
    assert result[ResultKey.OUTCOME] == Outcome.PLANNED.value
    assert result[ResultKey.FROM_REVISIONS] == ["0003"]
    assert result[PlanKey.PENDING_REVISIONS] == ["0004", "0005"]
    assert len(result[PlanKey.PLAN_HASH]) == 64
    assert f"planHash: {result[PlanKey.PLAN_HASH]}" in done.stdout
    if style in RENDERING_STYLES:
        assert result[PlanKey.UNRENDERABLE] == [] and result[PlanKey.UNRENDERABLE_COUNT] == 0
        assert "-- revision 0004 (0003 -> 0004)" in done.stdout
        assert "ALTER TABLE items ADD COLUMN created_at" in done.stdout
        assert "CREATE UNIQUE INDEX ix_items_slug ON items (slug);" in done.stdout
        # 0004's four statements around its advisory-lock wait, the column, the index: no
        # BEGIN/COMMIT, no alembic_version bookkeeping
        assert result[PlanKey.STATEMENT_COUNT] == 6
        assert result[PlanKey.LINT_STATUS] == LintStatus.LINTED.value
    else:  # seed 001: `if context.is_offline_mode(): pass`
        assert result[PlanKey.UNRENDERABLE_COUNT] == 2
        for entry in result[PlanKey.UNRENDERABLE]:
            assert "offline branch does not run the migrations" in entry[UnrenderableKey.REASON]
        assert [e[UnrenderableKey.REVISION] for e in result[PlanKey.UNRENDERABLE]] == [
            "0004",
            "0005",
        ]
        assert "-- revision 0004 (0003 -> 0004): UNRENDERABLE" in done.stdout
        assert result[PlanKey.STATEMENT_COUNT] == 0
        assert result[PlanKey.LINT_STATUS] == LintStatus.SKIPPED.value
        assert "2 unrenderable" in result[ResultKey.MESSAGE]
    kit.assert_left_at(pg_server, pg_database, ["0003"], done)


@pytest.mark.parametrize("style", RENDERING_STYLES)
def test_from_an_empty_database_every_revision_renders(
    style: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = samples.materialize(style, "v1", tmp_path / "app")
    done = kit.run(app, kit.base_env(pg_server.url(pg_database)), "plan")
    assert done.code == ExitCode.OK, done.output
    assert done.result[PlanKey.PENDING_REVISIONS] == ["0001", "0002", "0003"]
    assert done.result[PlanKey.UNRENDERABLE_COUNT] == 0
    assert "-- revision 0001 (base -> 0001)" in done.stdout
    assert "CREATE TABLE alembic_version" in done.stdout  # printed as Alembic would run it
    assert "CREATE TABLE items" in done.stdout
    assert "ALTER TABLE items ALTER COLUMN slug SET NOT NULL" in done.stdout
    # squawk never sees Alembic's own version table: in 0001 only items.name's VARCHAR(100)
    # is flagged, not alembic_version's VARCHAR(32)
    varchar = [f[FindingKey.REVISION] for f in findings_of(done, "prefer-text-field")]
    assert varchar.count("0001") == 1, done.stdout
    setting_not_null = findings_of(done, "adding-not-nullable-field")
    assert [f[FindingKey.REVISION] for f in setting_not_null] == ["0003"]
    assert setting_not_null[0][FindingKey.SEVERITY] == Severity.HIGH.value
    assert pg_server.execute("SELECT to_regclass('public.alembic_version')", pg_database) == [
        (None,)
    ]


def test_create_index_without_concurrently_is_flagged_high(v3_over_v2: AppEnv) -> None:
    app, env = v3_over_v2
    done = kit.run(app, env, "plan")
    assert done.code == ExitCode.OK, done.output  # findings are data, not a failure
    assert done.result[PlanKey.PENDING_REVISIONS] == ["0005"]
    index = findings_of(done, INDEX_RULE)
    assert len(index) == 1
    assert index[0][FindingKey.REVISION] == "0005"
    assert index[0][FindingKey.SEVERITY] == Severity.HIGH.value
    assert "index" in index[0][FindingKey.MESSAGE].lower()
    assert done.result[PlanKey.FINDINGS][0][FindingKey.RULE] == INDEX_RULE  # most severe first
    assert done.result[PlanKey.FINDING_COUNTS][Severity.HIGH.value] == 1
    assert done.result[PlanKey.LINTER].startswith("squawk ")
    assert f"-- finding 0005 high {INDEX_RULE}:" in done.stdout
    assert "findings: 1 high" in done.result[ResultKey.MESSAGE]

    # A CI pipeline fails the pull request with --fail-on.
    strict = kit.run(app, env, "plan", "--fail-on", "high")
    assert strict.code == ExitCode.PENDING, strict.output
    assert strict.result[ResultKey.EXIT_CODE] == ExitCode.PENDING
    assert strict.result[PlanKey.PLAN_HASH] == done.result[PlanKey.PLAN_HASH]

    # The same index, CONCURRENTLY in an autocommit block, is not flagged.
    revision = samples.versions_dir(app) / "0005_index_slug.py"
    revision.write_text(
        revision.read_text().replace(
            '    op.create_index("ix_items_slug", "items", ["slug"], unique=True)',
            "    with op.get_context().autocommit_block():\n"
            '        op.create_index("ix_items_slug", "items", ["slug"], unique=True,'
            " postgresql_concurrently=True)",
        )
    )
    fixed = kit.run(app, env, "plan", "--fail-on", "high")
    assert "CREATE UNIQUE INDEX CONCURRENTLY ix_items_slug" in fixed.stdout, fixed.output
    assert findings_of(fixed, INDEX_RULE) == []
    assert fixed.code == ExitCode.OK, fixed.output


def test_plan_hash_is_stable_and_follows_the_sql(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    migrated(pg_server, pg_database, "seed004_ini_url", "v1", tmp_path)
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    env = kit.base_env(pg_server.url(pg_database))

    first = kit.run(app, env, "plan").result[PlanKey.PLAN_HASH]
    again = kit.run(app, env, "plan").result[PlanKey.PLAN_HASH]
    asyncpg_only = kit.run(app, kit.asyncpg_only(env, tmp_path), "plan")
    assert asyncpg_only.result[ResultKey.DRIVER] == "asyncpg", asyncpg_only.output
    assert first == again == asyncpg_only.result[PlanKey.PLAN_HASH]

    revision = samples.versions_dir(app) / "0005_index_slug.py"
    revision.write_text(revision.read_text().replace("ix_items_slug", "ix_items_slug_v2"))
    changed = kit.run(app, env, "plan").result[PlanKey.PLAN_HASH]
    assert changed != first

    # The database moved on (0004 applied elsewhere): another plan, another hash.
    migrated(pg_server, pg_database, "seed004_ini_url", "v2", tmp_path)
    moved = kit.run(app, env, "plan")
    assert moved.result[PlanKey.PENDING_REVISIONS] == ["0005"]
    assert moved.result[PlanKey.PLAN_HASH] not in (first, changed)


def test_plan_never_writes_and_never_waits_for_the_migration_lock(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    migrated(pg_server, pg_database, "seed004_ini_url", "v1", tmp_path)
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    before = snapshot(pg_server, pg_database)
    holder = pg_server.connection(pg_database)  # a migration in progress holds the lock
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_database),))
        done = kit.run(app, kit.base_env(pg_server.url(pg_database)), "plan", timeout=60)
    finally:
        holder.close()
    assert done.code == ExitCode.OK, done.output
    assert "waiting for the migration lock" not in done.output
    assert done.result[PlanKey.PENDING_REVISIONS] == ["0004", "0005"]
    assert snapshot(pg_server, pg_database) == before


def test_a_revision_that_reads_the_database_is_unrenderable(v3_over_v2: AppEnv) -> None:
    app, env = v3_over_v2
    (samples.versions_dir(app) / "0006_count_items.py").write_text(READS_DATABASE)
    done = kit.run(app, env, "plan")
    assert done.code == ExitCode.OK, done.output
    assert done.result[PlanKey.PENDING_REVISIONS] == ["0005", "0006"]
    assert done.result[PlanKey.UNRENDERABLE_COUNT] == 1
    (entry,) = done.result[PlanKey.UNRENDERABLE]
    assert entry[UnrenderableKey.REVISION] == "0006"
    assert "raised in offline mode" in entry[UnrenderableKey.REASON]
    assert "reads the database" in entry[UnrenderableKey.REASON]
    assert "CREATE UNIQUE INDEX ix_items_slug" in done.stdout  # 0005 still rendered
    assert "-- revision 0006 (0005 -> 0006): UNRENDERABLE" in done.stdout
    strict = kit.run(app, env, "plan", "--fail-on", "high")
    assert strict.code == ExitCode.PENDING  # unrenderable needs a person, whatever the findings


def test_without_squawk_the_plan_renders_and_says_lint_was_skipped(
    v3_over_v2: AppEnv, tmp_path: Path
) -> None:
    app, env = v3_over_v2
    linted = kit.run(app, env, "plan")
    for squawk, why in [(str(tmp_path / "no-squawk"), "squawk not found"), ("off", "is off")]:
        done = kit.run(app, {**env, "MIGRATEGATE_SQUAWK": squawk}, "plan")
        assert done.code == ExitCode.OK, done.output
        result = done.result
        assert result[PlanKey.LINT_STATUS] == LintStatus.SKIPPED.value
        assert why in result[PlanKey.LINT_REASON]
        assert result[PlanKey.LINTER] is None
        assert result[PlanKey.FINDINGS] == []
        assert any("linting skipped" in w for w in result[ResultKey.WARNINGS])
        assert "lint skipped" in result[ResultKey.MESSAGE]
        assert "CREATE UNIQUE INDEX ix_items_slug" in done.stdout
        assert result[PlanKey.PLAN_HASH] == linted.result[PlanKey.PLAN_HASH]  # same SQL
        strict = kit.run(app, {**env, "MIGRATEGATE_SQUAWK": squawk}, "plan", "--fail-on", "high")
        assert strict.code == ExitCode.PENDING  # not linted is never "no findings"


def test_from_needs_no_database(tmp_path: Path) -> None:
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    nowhere = "postgresql+asyncpg://ci:ci-secret@127.0.0.1:9/none"  # nothing listens on port 9
    done = kit.run(app, kit.base_env(nowhere), "plan", "--from", "0004", timeout=60)
    assert done.code == ExitCode.OK, done.output
    assert done.result[PlanKey.PENDING_REVISIONS] == ["0005"]
    assert findings_of(done, INDEX_RULE)[0][FindingKey.SEVERITY] == Severity.HIGH.value
    unknown = kit.run(app, kit.base_env(nowhere), "plan", "--from", "9999", timeout=60)
    assert unknown.code == ExitCode.BAD_INPUT
    assert "9999" in unknown.result[ResultKey.MESSAGE]
    assert "ci-secret" not in done.output + unknown.output


def test_at_the_target_there_is_nothing_to_plan(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    migrated(pg_server, pg_database, "seed004_ini_url", "v3", tmp_path)
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    done = kit.run(app, kit.base_env(pg_server.url(pg_database)), "plan", "--fail-on", "low")
    assert done.code == ExitCode.OK, done.output
    assert done.result[ResultKey.OUTCOME] == Outcome.UP_TO_DATE.value
    assert done.result[PlanKey.PENDING_REVISIONS] == []
    assert done.result[PlanKey.FINDING_COUNTS] == {"low": 0, "medium": 0, "high": 0}


def test_the_injected_payload_finds_squawk_beside_it(v3_over_v2: AppEnv, tmp_path: Path) -> None:
    # As in an injecting Job: the payload and <payload>/bin/squawk (image/Dockerfile), copied
    # with the contract's INSTALL_COMMAND, run by another Python with no squawk on PATH.
    spec = importlib.util.spec_from_file_location(
        "build_payload", REPO_ROOT / "image" / "build_payload.py"
    )
    assert spec is not None and spec.loader is not None
    build_payload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_payload)
    image_payload = build_payload.build_payload(tmp_path / "image-payload")
    real = shutil.which("squawk", path=str(Path(sys.executable).parent))
    assert real, "squawk-cli (pyproject's test extra) is not installed"
    calls = tmp_path / "squawk-calls"
    wrapper = image_payload / contract.PAYLOAD_SQUAWK
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    injected = tmp_path / "injected"
    injected.mkdir()
    command = [
        part.replace(contract.IMAGE_PAYLOAD_DIR, str(image_payload))
        for part in contract.INSTALL_COMMAND
    ]
    command = [part.replace(contract.INJECTED_PAYLOAD_DIR, str(injected)) for part in command]
    subprocess.run(command, check=True)
    assert os.stat(injected / contract.PAYLOAD_SQUAWK).st_mode & stat.S_IXOTH

    app, env = v3_over_v2
    python = tmp_path / "python"  # a Python with nothing beside it
    python.symlink_to(os.path.realpath(sys.executable))
    env = {**env, "PATH": "/usr/bin:/bin"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if "site-packages" in p)
    done = kit.run_ok([str(python), str(injected / "run.py"), "plan"], app, env)
    assert "-- lint: Linted by squawk" in done.stdout
    assert f"-- finding 0005 high {INDEX_RULE}" in done.stdout
    assert "--reporter json" in calls.read_text()


COMPAT_PYTHON = os.environ.get("MIGRATEGATE_COMPAT_PYTHON", "")


@pytest.mark.skipif(
    not COMPAT_PYTHON, reason="MIGRATEGATE_COMPAT_PYTHON (python with SQLAlchemy 1.4) not set"
)
@pytest.mark.parametrize("driver", ["auto", "asyncpg"])
def test_plan_on_python39_sqlalchemy14_gives_the_same_hash(
    driver: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    migrated(pg_server, pg_database, "seed004_ini_url", "v1", tmp_path)
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    (app / samples.BASE_14_PATH).write_text(samples.BASE_14)
    env = kit.base_env(pg_server.url(pg_database))
    modern = kit.run(app, env, "plan", "--driver", driver)
    result = tmp_path / "result-39.json"
    squawk = shutil.which("squawk", path=str(Path(sys.executable).parent)) or "squawk"
    done = subprocess.run(
        [COMPAT_PYTHON, "-m", "migrategate.runner", "plan", "--driver", driver]
        + ["--squawk", squawk, "--result-file", str(result)],
        cwd=app,
        env={**env, "PYTHONPATH": str(REPO_ROOT / "operator")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    old = json.loads(result.read_text())
    assert old[PlanKey.PENDING_REVISIONS] == ["0004", "0005"]
    assert old[PlanKey.PLAN_HASH] == modern.result[PlanKey.PLAN_HASH]
    assert old[PlanKey.FINDINGS] == modern.result[PlanKey.FINDINGS]
    assert kit.versions(pg_server, pg_database) == ["0003"]


@pytest.mark.parametrize("style", ["seed004_ini_url", "seed002_async_engine_wrap"])
def test_migrate_applies_an_approved_plan_and_refuses_a_stale_one(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path, style: str
) -> None:
    migrated(pg_server, pg_database, style, "v1", tmp_path)
    app = samples.materialize(style, "v3", tmp_path / "app")
    env = kit.base_env(pg_server.url(pg_database))
    approved = kit.run(app, env, "plan").result[PlanKey.PLAN_HASH]

    # The database moved on (0004 applied elsewhere) after the plan was approved.
    migrated(pg_server, pg_database, style, "v2", tmp_path)
    before = snapshot(pg_server, pg_database)
    stale = kit.run(app, env, "migrate", "--plan-hash", approved)
    assert stale.code == ExitCode.BAD_INPUT, stale.output
    assert stale.result[ResultKey.ERROR_CLASS] == "BadInput"
    assert stale.result[ResultKey.STALE_PLAN] is True
    assert f"the approved plan {approved[:12]} is stale" in stale.result[ResultKey.MESSAGE]
    assert "\n" not in stale.result[ResultKey.MESSAGE]
    assert snapshot(pg_server, pg_database) == before  # nothing applied

    # The new plan's hash is the one the refusal reported; approving it applies 0005.
    current = kit.run(app, env, "plan").result[PlanKey.PLAN_HASH]
    assert stale.result[PlanKey.PLAN_HASH] == current != approved
    env_approved = {**env, "MIGRATEGATE_PLAN_HASH": current}
    done = kit.migrate_ok(app, env_approved)
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0005"]
    assert ResultKey.STALE_PLAN not in done.result
