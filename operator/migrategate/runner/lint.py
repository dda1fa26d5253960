"""Lint rendered migration SQL with squawk, and rank its rules by how much they can hurt.

squawk (``squawk-cli`` on PyPI, a single binary) is optional: the migrategate image
puts it beside the injected payload (``contract.PAYLOAD_SQUAWK``), a developer or CI
pipeline installs it with pip. When it cannot be found or run, the plan still renders
and its result says that linting was skipped or failed: never "no findings".
Stdlib only, Python >= 3.9.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

from .contract import PAYLOAD_SQUAWK, SQUAWK_OFF, LintStatus, Severity

# squawk's rules (2.x, checked against `squawk` 2.70.0) ranked for a migration that runs
# while the previous release still serves traffic. HIGH: blocks reads or writes of a
# table for a scan or rewrite, fails outright, loses data or breaks the running clients.
# MEDIUM: a real risk that depends on the data or the clients. LOW: advice and style.
# A rule not listed here (a newer squawk's) is MEDIUM: an unknown finding still counts.
RULE_SEVERITY: Mapping[str, Severity] = {
    # Locks that block traffic while the table is scanned or rewritten.
    "require-concurrent-index-creation": Severity.HIGH,  # CREATE INDEX blocks writes
    "constraint-missing-not-valid": Severity.HIGH,  # validating scan blocks writes
    "adding-foreign-key-constraint": Severity.HIGH,  # scan, SHARE ROW EXCLUSIVE on both tables
    "adding-not-nullable-field": Severity.HIGH,  # SET NOT NULL scans under ACCESS EXCLUSIVE
    "changing-column-type": Severity.HIGH,  # rewrite under ACCESS EXCLUSIVE
    "adding-serial-primary-key-field": Severity.HIGH,  # rewrite under ACCESS EXCLUSIVE
    "adding-field-with-default": Severity.HIGH,  # a volatile default rewrites the table
    "disallowed-unique-constraint": Severity.HIGH,  # index build under ACCESS EXCLUSIVE
    "prefer-repack": Severity.HIGH,  # VACUUM FULL / CLUSTER hold ACCESS EXCLUSIVE
    "require-concurrent-reindex": Severity.HIGH,
    "require-concurrent-partition-detach": Severity.HIGH,
    # Lost data, or clients of the release still serving break.
    "ban-drop-column": Severity.HIGH,
    "ban-drop-table": Severity.HIGH,
    "ban-drop-database": Severity.HIGH,
    "ban-drop-schema": Severity.HIGH,
    "ban-truncate-cascade": Severity.HIGH,
    "adding-required-field": Severity.HIGH,  # NOT NULL without a default: old inserts fail
    "renaming-column": Severity.HIGH,
    "renaming-table": Severity.HIGH,
    # Fails when run: CREATE INDEX CONCURRENTLY inside Alembic's transaction.
    "ban-concurrent-index-creation-in-transaction": Severity.HIGH,
    # Risky depending on the data or the clients.
    "require-concurrent-index-deletion": Severity.MEDIUM,
    "ban-drop-not-null": Severity.MEDIUM,
    "ban-drop-index": Severity.MEDIUM,
    "ban-drop-constraint": Severity.MEDIUM,
    "ban-drop-view": Severity.MEDIUM,
    "ban-drop-function": Severity.MEDIUM,
    "ban-drop-type": Severity.MEDIUM,
    "ban-drop-sequence": Severity.MEDIUM,
    "ban-drop-domain": Severity.MEDIUM,
    "ban-drop-extension": Severity.MEDIUM,
    "renaming-object": Severity.MEDIUM,
    "ban-create-domain-with-constraint": Severity.MEDIUM,
    "ban-alter-domain-with-add-constraint": Severity.MEDIUM,
    "transaction-nesting": Severity.MEDIUM,
    "ban-uncommitted-transaction": Severity.MEDIUM,
    "identifier-too-long": Severity.MEDIUM,  # PostgreSQL silently truncates it
    # Advice and style.
    "require-lock-timeout": Severity.LOW,
    "require-statement-timeout": Severity.LOW,
    "require-timeout-settings": Severity.LOW,
    "prefer-robust-stmts": Severity.LOW,
    "prefer-text-field": Severity.LOW,
    "prefer-bigint-over-int": Severity.LOW,
    "prefer-bigint-over-smallint": Severity.LOW,
    "prefer-identity": Severity.LOW,
    "prefer-timestamp-tz": Severity.LOW,
    "ban-char-field": Severity.LOW,
    "require-enum-value-ordering": Severity.LOW,
    "require-table-schema": Severity.LOW,
    "unused-ignore": Severity.LOW,
}
UNKNOWN_RULE_SEVERITY = Severity.MEDIUM

MAX_FINDING_MESSAGE = 160
SQUAWK_TIMEOUT = 60.0  # seconds for one revision's SQL


def severity_of(rule: str) -> Severity:
    """The severity migrategate gives a squawk rule (MEDIUM for one it does not know)."""
    return RULE_SEVERITY.get(rule, UNKNOWN_RULE_SEVERITY)


def severity_rank(severity: str) -> int:
    """Position of a severity from low to high (``contract.SEVERITIES``); -1 if unknown."""
    values = [s.value for s in Severity]
    return values.index(severity) if severity in values else -1


@dataclass(frozen=True)
class Finding:
    """One problem squawk found in one revision's SQL."""

    revision: str
    rule: str
    severity: str
    message: str
    line: int = 0  # 1-based line in the SQL that was linted (0: unknown)


@dataclass(frozen=True)
class Linter:
    """A squawk binary that answered ``--version``."""

    path: str
    version: str


@dataclass
class LintOutcome:
    """What linting a plan gave: its status, the findings, and why if it did not lint."""

    status: str = LintStatus.SKIPPED.value
    linter: Optional[str] = None  # "squawk 2.70.0"
    reason: Optional[str] = None  # why it was skipped or failed
    findings: list[Finding] = field(default_factory=list)  # in revision order


def payload_squawk(runner_file: str = __file__) -> str:
    """Where the injected payload keeps squawk: <payload>/bin/squawk, beside ``migrategate/``."""
    payload_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(runner_file))))
    return os.path.join(payload_root, *PAYLOAD_SQUAWK.split("/"))


def find_squawk(
    explicit: Optional[str], environ: Mapping[str, str], runner_file: str = __file__
) -> tuple[Optional[str], Optional[str]]:
    """(path, None) of the squawk to use, or (None, why not).

    Order: ``--squawk``/its variable (``off`` disables linting), the payload's
    ``bin/squawk``, ``squawk`` on PATH, then beside the running Python (a virtualenv
    whose ``bin`` is not on PATH).
    """
    if explicit:
        if explicit == SQUAWK_OFF:
            return None, "linting is off (--squawk off)"
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit, None
        found = shutil.which(explicit, path=environ.get("PATH", os.defpath))
        if found:
            return found, None
        return None, f"squawk not found at {explicit!r} (--squawk)"
    candidates = [payload_squawk(runner_file)]
    on_path = shutil.which("squawk", path=environ.get("PATH", os.defpath))
    if on_path:
        candidates.append(on_path)
    candidates.append(os.path.join(os.path.dirname(sys.executable), "squawk"))
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate, None
    return None, (
        "squawk not found (looked beside the runner payload, on PATH and beside Python):"
        " pip install squawk-cli, or pass --squawk PATH"
    )


def squawk_version(path: str) -> str:
    """``squawk --version``'s version; raises OSError or subprocess errors if it cannot run."""
    done = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=SQUAWK_TIMEOUT, check=True
    )
    words = done.stdout.split()
    return words[-1] if words else "unknown"


def squawk_command(path: str, pg_version: Optional[str], filename: str) -> list[str]:
    """The argv that lints one revision's SQL read from stdin, reporting JSON."""
    argv = [path, "--reporter", "json", "--stdin-filepath", filename]
    if pg_version:
        argv += ["--pg-version", pg_version]
    return argv


def parse_report(revision: str, stdout: str) -> list[Finding]:
    """Findings from squawk's ``--reporter json`` output (raises ValueError if it is not)."""
    entries = json.loads(stdout or "[]")
    if not isinstance(entries, list):
        raise ValueError("squawk's JSON report is not a list")
    findings = []
    for entry in entries:
        rule = str(entry.get("rule_name") or "unknown")
        message = " ".join(str(entry.get("message") or rule).split())
        line = entry.get("line")
        findings.append(
            Finding(
                revision=revision,
                rule=rule,
                severity=severity_of(rule).value,
                message=clip(message, MAX_FINDING_MESSAGE),
                line=line + 1 if isinstance(line, int) else 0,  # squawk counts lines from 0
            )
        )
    return findings


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def lint_revision(
    linter: Linter, revision: str, sql: str, pg_version: Optional[str]
) -> list[Finding]:
    """squawk's findings on one revision's SQL; raises RuntimeError when squawk fails."""
    argv = squawk_command(linter.path, pg_version, f"{revision}.sql")
    try:
        done = subprocess.run(
            argv, input=sql, capture_output=True, text=True, timeout=SQUAWK_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"squawk could not run: {error}") from None
    # squawk exits 1 when it found something; its JSON report is on stdout either way.
    if done.returncode not in (0, 1):
        detail = (done.stderr or done.stdout).strip().splitlines()[:1]
        raise RuntimeError(f"squawk exited {done.returncode}: {' '.join(detail)}")
    try:
        return parse_report(revision, done.stdout)
    except (ValueError, AttributeError) as error:
        raise RuntimeError(f"squawk's report could not be read: {error}") from None


def lint_plan(
    revisions: Iterable[tuple[str, str]],
    explicit: Optional[str],
    environ: Mapping[str, str],
    pg_version: Optional[str] = None,
) -> LintOutcome:
    """Lint each (revision, sql) with squawk; say why if that was skipped or failed."""
    path, why_not = find_squawk(explicit, environ)
    if path is None:
        return LintOutcome(LintStatus.SKIPPED.value, None, why_not)
    try:
        linter = Linter(path, squawk_version(path))
    except (OSError, subprocess.SubprocessError) as error:
        return LintOutcome(
            LintStatus.FAILED.value, None, f"squawk at {path} could not run: {error}"
        )
    outcome = LintOutcome(LintStatus.LINTED.value, f"squawk {linter.version}")
    for revision, sql in revisions:
        try:
            outcome.findings.extend(lint_revision(linter, revision, sql, pg_version))
        except RuntimeError as error:
            outcome.status = LintStatus.FAILED.value
            outcome.reason = f"revision {revision}: {error}"
            break
    return outcome
