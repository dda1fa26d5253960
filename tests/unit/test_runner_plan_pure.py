"""The pure parts of ``migrategate plan``: severities, squawk's report, clipping, exit codes."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from migrategate.runner import cli, contract, lint
from migrategate.runner.contract import (
    RESULT_MAX_BYTES,
    SEVERITIES,
    ExitCode,
    FindingKey,
    LintStatus,
    PlanKey,
    ResultKey,
    Severity,
    UnrenderableKey,
)
from migrategate.runner.errors import BadInput
from migrategate.runner.lint import Finding, parse_report, severity_of, severity_rank
from migrategate.runner.masking import Masker
from migrategate.runner.plan import (
    PlanOptions,
    exit_code,
    is_transaction,
    plan_hash,
    version_table_statement,
)
from migrategate.runner.plan_result import PlanResult, fit_json, plan_keys

REPO_ROOT = Path(__file__).resolve().parents[2]


def squawk_binary() -> Path:
    found = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
    reason = "squawk is missing: pip install squawk-cli (pyproject's test extra)"
    if not found:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found)


@pytest.mark.parametrize(
    ("rule", "severity"),
    [
        ("require-concurrent-index-creation", Severity.HIGH),
        ("constraint-missing-not-valid", Severity.HIGH),
        ("ban-drop-column", Severity.HIGH),
        ("ban-drop-table", Severity.HIGH),
        ("changing-column-type", Severity.HIGH),
        ("adding-not-nullable-field", Severity.HIGH),  # SET NOT NULL on a populated column
        ("adding-required-field", Severity.HIGH),
        ("renaming-column", Severity.HIGH),  # the release still serving breaks
        ("ban-drop-not-null", Severity.MEDIUM),
        ("require-lock-timeout", Severity.LOW),
        ("prefer-text-field", Severity.LOW),
        ("a-rule-of-a-newer-squawk", Severity.MEDIUM),  # unknown still counts
    ],
)
def test_squawk_rules_map_to_severities(rule: str, severity: Severity) -> None:
    assert severity_of(rule) is severity


def test_severities_are_ordered_low_to_high() -> None:
    assert SEVERITIES == ("low", "medium", "high")
    assert severity_rank("low") < severity_rank("medium") < severity_rank("high")
    assert severity_rank("bogus") == -1
    assert set(lint.RULE_SEVERITY.values()) <= set(Severity)


def test_every_mapped_rule_is_one_squawk_knows() -> None:
    # A misspelt rule would silently fall back to MEDIUM; squawk's binary names its rules.
    binary = squawk_binary().read_bytes()
    unknown = [rule for rule in lint.RULE_SEVERITY if rule.encode() not in binary]
    assert unknown == []


def test_squawk_report_becomes_findings() -> None:
    report = json.dumps(
        [
            {
                "file": "0005.sql",
                "line": 7,
                "level": "Warning",
                "message": "During normal index creation,\n  table updates are blocked.",
                "rule_name": "require-concurrent-index-creation",
            },
            {"line": 2, "message": "x" * 500, "rule_name": "prefer-robust-stmts"},
        ]
    )
    first, second = parse_report("0005", report)
    assert first == Finding(
        "0005",
        "require-concurrent-index-creation",
        "high",
        "During normal index creation, table updates are blocked.",
        8,  # squawk counts lines from 0
    )
    assert second.severity == "low" and len(second.message) == lint.MAX_FINDING_MESSAGE
    assert parse_report("0005", "") == []
    with pytest.raises(ValueError):
        parse_report("0005", "not json")


def test_squawk_really_reports_what_the_parser_reads(tmp_path: Path) -> None:
    linter = lint.Linter(str(squawk_binary()), "x")
    sql = "BEGIN;\n\nCREATE INDEX ix ON items (slug);\n\nCOMMIT;\n"
    findings = lint.lint_revision(linter, "0005", sql, "15.4")
    index = [f for f in findings if f.rule == "require-concurrent-index-creation"]
    assert len(index) == 1 and index[0].severity == "high" and index[0].line == 3


def _finding(i: int, severity: str) -> Finding:
    return Finding(f"{i:04d}", f"rule-{severity}", severity, "m" * 150)


def test_a_large_plan_is_clipped_under_the_termination_message_limit() -> None:
    findings = [_finding(i, SEVERITIES[i % 3]) for i in range(200)]
    result = PlanResult(
        plan_hash="a" * 64,
        pending=[f"{i:04d}" for i in range(300)],
        statement_count=900,
        findings=findings,
        unrenderable=[(f"{i:04d}", "because " * 60) for i in range(5)],
        lint_status=LintStatus.LINTED.value,
        linter="squawk 2.70.0",
    )
    base = {ResultKey.MESSAGE: "m" * 1024, ResultKey.WARNINGS: ["w" * 1024] * 5}
    data = json.loads(result.fit(base, Masker()))
    assert len(json.dumps(data, separators=(",", ":")).encode()) <= RESULT_MAX_BYTES
    assert data[PlanKey.PLAN_HASH] == "a" * 64
    assert data[PlanKey.FINDING_COUNTS] == {"low": 67, "medium": 67, "high": 66}  # exact
    assert data[PlanKey.UNRENDERABLE_COUNT] == 5
    assert len(data[PlanKey.UNRENDERABLE]) == 5  # kept, their reasons shortened
    assert data[PlanKey.STATEMENT_COUNT] == 900
    kept = [f[FindingKey.SEVERITY] for f in data[PlanKey.FINDINGS]]
    assert kept and set(kept) == {"high"}  # the least severe went first
    assert data[PlanKey.PENDING_REVISIONS][-1].startswith("... ")
    listed = data[PlanKey.PENDING_REVISIONS][:-1]
    more = int(data[PlanKey.PENDING_REVISIONS][-1].split()[1])
    assert len(listed) + more == 300


def test_a_small_plan_is_kept_whole_and_masked() -> None:
    result = PlanResult(
        plan_hash="b" * 64,
        pending=["0004", "0005"],
        findings=[_finding(5, "low"), _finding(5, "high")],
        unrenderable=[("0004", "env.py failed: could not connect as app:hunter2")],
        lint_status=LintStatus.LINTED.value,
    )
    data = json.loads(result.fit({ResultKey.WARNINGS: []}, Masker(("hunter2",))))
    assert [f[FindingKey.SEVERITY] for f in data[PlanKey.FINDINGS]] == ["high", "low"]
    assert data[PlanKey.UNRENDERABLE] == [
        {
            UnrenderableKey.REVISION: "0004",
            UnrenderableKey.REASON: data[PlanKey.UNRENDERABLE][0][UnrenderableKey.REASON],
        }
    ]
    assert "hunter2" not in json.dumps(data)
    assert set(plan_keys(result, Masker())) == {v for k, v in vars(PlanKey).items() if k.isupper()}


def test_fit_json_stops_when_nothing_is_left_to_shrink() -> None:
    data = {PlanKey.FINDINGS: [], PlanKey.UNRENDERABLE: [], PlanKey.PENDING_REVISIONS: ["0001"]}
    data["huge"] = "x" * 10_000  # nothing the steps know: returned as it is, no endless loop
    assert json.loads(fit_json(data, 100))["huge"] == "x" * 10_000


@pytest.mark.parametrize(
    ("statement", "schema", "bookkeeping"),
    [
        ("CREATE TABLE alembic_version (\n    version_num VARCHAR(32) NOT NULL", None, True),
        ("INSERT INTO alembic_version (version_num) VALUES ('0001');", None, True),
        ("UPDATE alembic_version SET version_num='0002' WHERE x", None, True),
        ("DELETE FROM alembic_version WHERE alembic_version.version_num = '1'", None, True),
        ('UPDATE "meta"."alembic_version" SET version_num=\'2\'', "meta", True),
        ("CREATE TABLE alembic_version_archive (x int);", None, False),
        ("UPDATE items SET slug = lower(name);", None, False),
    ],
)
def test_alembic_version_statements_are_told_apart(
    statement: str, schema: str | None, bookkeeping: bool
) -> None:
    pattern = version_table_statement(schema, "alembic_version")
    assert bool(pattern.match(statement)) is bookkeeping


def test_transactions_and_hash() -> None:
    assert is_transaction("BEGIN;") and is_transaction("COMMIT;") and not is_transaction("SELECT")
    assert plan_hash(["a", "b"]) == plan_hash(["ab"])
    assert plan_hash(["a"]) != plan_hash(["b"])
    assert len(plan_hash([])) == 64


@pytest.mark.parametrize(
    ("severities", "unrenderable", "lint_status", "fail_on", "code"),
    [
        (["high"], [], "Linted", None, ExitCode.OK),  # no --fail-on: findings are data
        (["high"], [], "Linted", "high", ExitCode.PENDING),
        (["medium"], [], "Linted", "high", ExitCode.OK),
        (["medium"], [], "Linted", "medium", ExitCode.PENDING),
        ([], [("0004", "x")], "Linted", "high", ExitCode.PENDING),
        ([], [], "Skipped", "high", ExitCode.PENDING),  # not linted is not "no findings"
        ([], [], "Linted", "low", ExitCode.OK),
    ],
)
def test_fail_on(
    severities: list, unrenderable: list, lint_status: str, fail_on: str | None, code: int
) -> None:
    result = PlanResult(
        pending=["0004"],
        findings=[_finding(4, s) for s in severities],
        unrenderable=unrenderable,
        lint_status=lint_status,
    )
    assert exit_code(result, fail_on) == code
    assert exit_code(PlanResult(lint_status="Skipped"), "low") == ExitCode.OK  # nothing pending


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_squawk_is_found_beside_the_payload_first(tmp_path: Path) -> None:
    # payload/migrategate/runner/lint.py -> payload/bin/squawk
    runner_file = tmp_path / "payload" / "migrategate" / "runner" / "lint.py"
    beside = _executable(tmp_path / "payload" / contract.PAYLOAD_SQUAWK)
    on_path = _executable(tmp_path / "path" / "squawk")
    environ = {"PATH": str(on_path.parent)}
    assert lint.find_squawk(None, environ, str(runner_file)) == (str(beside), None)
    beside.unlink()
    assert lint.find_squawk(None, environ, str(runner_file)) == (str(on_path), None)
    assert lint.find_squawk("off", environ, str(runner_file))[0] is None
    path, why = lint.find_squawk(str(tmp_path / "nope"), environ, str(runner_file))
    assert path is None and "not found" in why


def test_plan_options_flags_win_over_the_environment() -> None:
    args = argparse.Namespace(from_revisions=None, squawk="/x/squawk", fail_on=None)
    environ = {"MIGRATEGATE_PLAN_FROM": "0003", "MIGRATEGATE_SQUAWK": "/y", "X": "1"}
    assert PlanOptions.from_args(args, environ) == PlanOptions("0003", "/x/squawk", None)
    with pytest.raises(BadInput, match="MIGRATEGATE_PLAN_FAIL_ON"):
        PlanOptions.from_args(args, {"MIGRATEGATE_PLAN_FAIL_ON": "severe"})


def test_plan_options_belong_to_plan_only() -> None:
    out = io.StringIO()
    code = cli.main(["migrate", "--from", "0003"], stream=out, environ={})
    assert code == ExitCode.BAD_INPUT
    code = cli.main(["plan", "--fail-on", "severe"], stream=out, environ={})
    assert code == ExitCode.BAD_INPUT
    assert "plan" in contract.COMMANDS


def test_the_image_puts_squawk_where_plan_looks() -> None:
    dockerfile = (REPO_ROOT / "image" / "Dockerfile").read_text()
    assert f'"${{PAYLOAD_DIR}}/{contract.PAYLOAD_SQUAWK}"' in dockerfile
    assert '"squawk-cli==${SQUAWK_VERSION}"' in dockerfile
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert any(
        dep.startswith("squawk-cli")
        for dep in pyproject["project"]["optional-dependencies"]["test"]
    )


def test_a_long_unrenderable_chain_still_fits() -> None:
    # seed 001's style: every one of 200 pending revisions unrenderable, for the same reason
    result = PlanResult(
        plan_hash="c" * 64,
        pending=[f"{i:04d}" for i in range(200)],
        unrenderable=[(f"{i:04d}", "env.py's offline branch " * 20) for i in range(200)],
        lint_status=LintStatus.SKIPPED.value,
        lint_reason="no revision could be rendered",
    )
    encoded = result.fit({ResultKey.MESSAGE: "planned", ResultKey.WARNINGS: ["w"]}, Masker())
    assert len(encoded.encode()) <= RESULT_MAX_BYTES
    data = json.loads(encoded)
    assert data[PlanKey.UNRENDERABLE_COUNT] == 200 and data[PlanKey.UNRENDERABLE]
    assert data[PlanKey.UNRENDERABLE][0][UnrenderableKey.REVISION] == "0000"
    assert data[PlanKey.LINT_STATUS] == LintStatus.SKIPPED.value
