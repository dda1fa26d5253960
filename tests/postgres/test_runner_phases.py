"""Expand and contract on a real server (issue 12): a rename of items.name to items.title.

Images ec-v1 (no contract branch), ec-v2 (expand 0004 | contract 0004c) and ec-v3 (expand 0005 |
contract 0005c), see tests/samples/README.md and docs/expand-contract.md. The SQL that
"old" and "new" pods run is what ec-v1's and ec-v2's code would send.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pgserver
import psycopg
import pytest
import runnerkit as kit
import samples
from migrategate.runner.contract import ExitCode, PhaseKey, ResultKey

pytestmark = pytest.mark.postgres

OPERATOR_DIR = Path(__file__).resolve().parents[2] / "operator"
COMPAT_PYTHON = os.environ.get("MIGRATEGATE_COMPAT_PYTHON", "")

OLD_POD_INSERT = "INSERT INTO items (id, name, slug) VALUES ({id}, 'Old {id}', 'old-{id}')"
NEW_POD_INSERT = "INSERT INTO items (id, title, slug) VALUES ({id}, 'New {id}', 'new-{id}')"


def columns(pg: pgserver.PgServer, db: str) -> list[str]:
    rows = pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'", db
    )
    return sorted(r[0] for r in rows)


def image(tmp_path: Path, style: str, version: str) -> Path:
    return samples.materialize(style, version, tmp_path / version)


def migrate(app: Path, env: dict, *args: str) -> kit.Run:
    done = kit.run(app, env, "migrate", *args)
    kit.assert_no_password(done)
    return done


def assert_phases(result: dict, phase: str, expand: list, contract: list) -> None:
    assert result[PhaseKey.PHASE] == phase
    assert result[PhaseKey.EXPAND_HEADS] == expand
    assert result[PhaseKey.CONTRACT_HEADS] == contract
    assert result[PhaseKey.HAS_CONTRACT_BRANCH] is bool(contract)
    assert result[PhaseKey.CONTRACT_BRANCH] == "contract"


@pytest.mark.parametrize("style", ["seed004_ini_url", "seed001_async_settings"])
def test_rename_in_three_images(
    style: str, pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    pg, db = pg_server, pg_database
    env = kit.base_env(pg.url(db))
    v1, v2, v3 = (image(tmp_path, style, v) for v in ("ec-v1", "ec-v2", "ec-v3"))

    # ec-v1: no contract branch, so today's behaviour under phase all.
    done = migrate(v1, env)
    assert done.code == 0, done.output
    assert_phases(done.result, "all", ["0003"], [])
    assert kit.versions(pg, db) == ["0003"]

    # ec-v2's pods wait for its expand head; contract before expand is refused, nothing applied.
    waited = kit.run(v2, env, "wait", "--timeout", "1")
    assert waited.code == ExitCode.TRANSIENT, waited.output
    refused = migrate(v2, env, "--phase", "contract")
    assert refused.code == ExitCode.BAD_INPUT, refused.output
    assert "needs the expand phase done first, but 0004 are pending" in refused.result["message"]
    assert kit.versions(pg, db) == ["0003"]

    # ec-v2 expand: title added and backfilled, name kept; both images' code works.
    done = migrate(v2, env, "--phase", "expand")
    assert done.code == 0, done.output
    assert_phases(done.result, "expand", ["0004"], ["0004c"])
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0004"]
    assert done.result[ResultKey.TARGET_REVISIONS] == ["0004"]
    assert kit.versions(pg, db) == ["0004"]
    assert columns(pg, db) == ["id", "name", "slug", "title"]
    pg.execute(OLD_POD_INSERT.format(id=10), db)
    pg.execute(NEW_POD_INSERT.format(id=11), db)
    pg.execute("UPDATE items SET name = 'Old renamed' WHERE id = 1", db)
    rows = pg.execute("SELECT id, name, title FROM items ORDER BY id", db)
    assert rows == [
        (1, "Old renamed", "Old renamed"),
        (2, "Second Item", "Second Item"),
        (10, "Old 10", "Old 10"),
        (11, "New 11", "New 11"),
    ]
    # The new pods' wait is satisfied by the expand heads alone; the contract is still pending.
    waited = kit.run(v2, env, "wait", "--timeout", "5")
    assert waited.code == 0, waited.output
    assert_phases(waited.result, "expand", ["0004"], ["0004c"])
    assert kit.run(v2, env, "check").code == 0
    pending = kit.run(v2, env, "check", "--phase", "contract")
    assert pending.code == ExitCode.PENDING, pending.output
    assert pending.result["message"] == "upgrade pending: 1 revision(s): 0004c"
    assert migrate(v2, env, "--phase", "expand").result[ResultKey.OUTCOME] == "UpToDate"

    # After the rollout: ec-v2 contract drops name; ec-v1's code would now fail.
    done = migrate(v2, env, "--phase", "contract")
    assert done.code == 0, done.output
    assert_phases(done.result, "contract", ["0004"], ["0004c"])
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0004c"]
    assert done.result[ResultKey.TO_REVISIONS] == ["0004c"]  # Alembic folds 0004 into it
    assert kit.versions(pg, db) == ["0004c"]
    assert columns(pg, db) == ["id", "slug", "title"]
    with pytest.raises(psycopg.errors.UndefinedColumn):
        pg.execute(OLD_POD_INSERT.format(id=12), db)
    pg.execute(NEW_POD_INSERT.format(id=12), db)
    again = migrate(v2, env, "--phase", "contract")
    assert (again.code, again.result[ResultKey.OUTCOME]) == (0, "UpToDate"), again.output
    assert kit.run(v2, env, "wait", "--timeout", "5").code == 0

    # ec-v3 (auto is expand): 0005 joins the contracted branch; then its own contract.
    assert kit.run(v3, env, "wait", "--timeout", "1").code == ExitCode.TRANSIENT
    done = migrate(v3, env)
    assert done.code == 0, done.output
    assert_phases(done.result, "expand", ["0005"], ["0005c"])
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0005"]
    assert kit.versions(pg, db) == ["0004c", "0005"]
    assert kit.run(v3, env, "wait", "--timeout", "5").code == 0
    assert kit.run(v3, env, "check", "--phase", "contract").code == ExitCode.PENDING
    done = migrate(v3, env, "--phase", "contract")
    assert done.code == 0, done.output
    assert done.result[ResultKey.APPLIED_REVISIONS] == ["0005c"]
    assert kit.versions(pg, db) == ["0005c"]
    assert columns(pg, db) == ["created_at", "id", "title"]
    for phase in ("expand", "contract", "all"):
        assert kit.run(v3, env, "check", "--phase", phase).code == 0


def test_phase_all_is_alembic_upgrade_heads(pg_server: pgserver.PgServer, tmp_path: Path) -> None:
    """--phase all applies both branches, leaving what `alembic upgrade heads` by hand leaves."""
    pg = pg_server
    by_runner, by_hand = pg.create_database(), pg.create_database()
    try:
        app = image(tmp_path, "seed000_env_sync_url", "ec-v3")
        done = migrate(app, kit.base_env(pg.url(by_runner)), "--phase", "all")
        assert done.code == 0, done.output
        assert done.result[ResultKey.APPLIED_REVISIONS] == [
            *("0001", "0002", "0003", "0004", "0005", "0004c", "0005c")
        ]
        assert_phases(done.result, "all", ["0005"], ["0005c"])
        env = {
            **kit.base_env(pg.url(by_hand)),
            "DATABASE_URL_SYNC": pg.url(by_hand).replace("+asyncpg", "+psycopg"),
        }
        kit.run_ok([str(kit.VENV_BIN / "python"), "-m", "alembic", "upgrade", "heads"], app, env)
        assert kit.versions(pg, by_hand) == kit.versions(pg, by_runner) == ["0005c"]
        assert columns(pg, by_hand) == columns(pg, by_runner) == ["created_at", "id", "title"]
        # The runner sees the hand-migrated database at the target in every phase.
        for phase in ("expand", "contract", "all"):
            check = kit.run(app, kit.base_env(pg.url(by_hand)), "check", "--phase", phase)
            assert check.code == 0, check.output
    finally:
        pg.drop_database(by_runner)
        pg.drop_database(by_hand)


def comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in (ResultKey.DURATION_SECONDS, "phase")}


def test_no_contract_branch_behaves_as_today(pg_server: pgserver.PgServer, tmp_path: Path) -> None:
    pg = pg_server
    app = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    dbs = [pg.create_database() for _ in range(3)]
    try:
        runs = [
            migrate(app, kit.base_env(pg.url(dbs[0]))),
            migrate(app, kit.base_env(pg.url(dbs[1])), "--phase", "expand"),
            migrate(app, kit.base_env(pg.url(dbs[2])), "--phase", "all"),
        ]
        for done, phase in zip(runs, ("all", "expand", "all"), strict=True):
            assert done.code == 0, done.output
            assert_phases(done.result, phase, ["0005"], [])
            assert comparable(done.result) == comparable(runs[0].result)
        assert runs[0].result[ResultKey.APPLIED_REVISIONS] == [
            "0001",
            "0002",
            "0003",
            "0004",
            "0005",
        ]
        assert all(kit.versions(pg, db) == ["0005"] for db in dbs)
        # contract has nothing of its own: a no-op after expand, refused before it
        done = migrate(app, kit.base_env(pg.url(dbs[0])), "--phase", "contract")
        assert (done.code, done.result[ResultKey.OUTCOME]) == (0, "UpToDate"), done.output
        fresh = pg.create_database()
        dbs.append(fresh)
        refused = migrate(app, kit.base_env(pg.url(fresh)), "--phase", "contract")
        assert refused.code == ExitCode.BAD_INPUT, refused.output
        assert kit.versions(pg, fresh) == []
    finally:
        for db in dbs:
            pg.drop_database(db)


@pytest.mark.parametrize(
    ("version", "branch", "message"),
    [
        ("v3", ("0003b", "0002"), "multiple heads (0003b, 0005)"),
        (
            "ec-v3",
            ("0005b", "0004"),
            "multiple heads: expand 0005, 0005b; contract (contract) 0005c",
        ),
    ],
)
@pytest.mark.parametrize("phase", [None, "expand", "contract", "all"])
def test_multiple_heads_outside_the_pattern_are_bad_input(
    version: str,
    branch: tuple,
    message: str,
    phase: str | None,
    pg_server: pgserver.PgServer,
    pg_database: str,
    tmp_path: Path,
) -> None:
    app = samples.materialize("seed004_ini_url", version, tmp_path / "app")
    rev, down = branch
    (samples.versions_dir(app) / f"{rev}.py").write_text(samples.revision_source(rev, down))
    args = ("--phase", phase) if phase else ()
    for command in ("migrate", "check", "wait") if phase is None else ("migrate",):
        done = kit.run(app, kit.base_env(pg_server.url(pg_database)), command, *args)
        assert done.code == ExitCode.BAD_INPUT, done.output
        assert message in done.result["message"]
    assert kit.versions(pg_server, pg_database) == []


@pytest.mark.skipif(not COMPAT_PYTHON, reason="MIGRATEGATE_COMPAT_PYTHON (SQLAlchemy 1.4) not set")
def test_phases_on_python39_sqlalchemy14(
    pg_server: pgserver.PgServer, pg_database: str, tmp_path: Path
) -> None:
    app = samples.materialize("seed004_ini_url", "ec-v2", tmp_path / "app")
    (app / samples.BASE_14_PATH).write_text(samples.BASE_14)
    result = tmp_path / "result.json"
    env = {**kit.base_env(pg_server.url(pg_database)), "PYTHONPATH": str(OPERATOR_DIR)}
    for phase, heads in (("expand", ["0004"]), ("contract", ["0004c"])):
        kit.run_ok(
            [COMPAT_PYTHON, "-m", "migrategate.runner", "migrate", "--phase", phase]
            + ["--result-file", str(result)],
            app,
            env,
        )
        assert kit.versions(pg_server, pg_database) == heads
        assert json.loads(result.read_text())[PhaseKey.PHASE] == phase
