"""The runner's contract with the operator: commands, options, exit codes, result keys.

This is the one place both sides read. The runner's CLI builds its parser from
OPTIONS; the controller's Job builder builds container args and env from the
same table, so the flags a Job passes and the flags the CLI accepts cannot
drift apart. Stdlib only, Python >= 3.9: it ships inside application images.
"""

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

COMMANDS: tuple[str, ...] = ("migrate", "wait", "check", "url", "plan")


class ExitCode(enum.IntEnum):
    """Process exit codes; the operator classifies a finished pod by these."""

    OK = 0  # done, or nothing to do
    # `check`: an upgrade is pending; `plan --fail-on S`: a finding of severity >= S, an
    # unrenderable revision, or linting skipped or failed
    PENDING = 1
    # URL, config, unknown target, multiple heads, database ahead with --if-ahead fail
    BAD_INPUT = 2
    TRANSIENT = 3  # database unreachable, lock wait timed out, `wait` timed out
    MIGRATION_FAILED = 4  # a revision raised; Postgres rolled its transaction back
    VERIFY_FAILED = 5  # after upgrade the heads are not the target
    # Stopped by SIGTERM (128 + 15, as a shell reports it): the pod was deleted, evicted or
    # drained. PostgreSQL rolls back an unfinished migration and the lock goes with the session.
    TERMINATED = 143


# Exit codes the operator retries with backoff; every other non-zero code is permanent.
TRANSIENT_EXIT_CODES = frozenset({ExitCode.TRANSIENT, ExitCode.TERMINATED})


class ErrorClass(str, enum.Enum):
    """The `errorClass` value of a result; one per non-zero exit code."""

    BAD_INPUT = "BadInput"
    TRANSIENT = "Transient"
    MIGRATION_FAILED = "MigrationFailed"
    VERIFY_FAILED = "VerificationFailed"
    TERMINATED = "Terminated"


class Outcome(str, enum.Enum):
    """The `outcome` value of a result."""

    SUCCEEDED = "Succeeded"  # revisions were applied
    UP_TO_DATE = "UpToDate"  # nothing to do (fast path, or another runner got there first)
    PENDING = "Pending"  # `check` only: an upgrade is pending
    FAILED = "Failed"
    PLANNED = "Planned"  # `plan` only: pending revisions were rendered (and linted)


class IfAhead(str, enum.Enum):
    """What to do when the database holds a revision the image's scripts do not know."""

    SUCCEED = "succeed"
    FAIL = "fail"


class Driver(str, enum.Enum):
    """Which DBAPI driver the runner uses for the sync URL."""

    AUTO = "auto"
    PSYCOPG = "psycopg"
    PSYCOPG2 = "psycopg2"
    ASYNCPG = "asyncpg"


@dataclass(frozen=True)
class Option:
    """One CLI option, settable by flag or environment variable (the flag wins)."""

    flag: str
    env: str
    default: Optional[str]
    help: str
    dest: str = ""
    choices: Optional[tuple[str, ...]] = None

    @property
    def name(self) -> str:
        """The attribute name argparse gives the option."""
        return self.dest or self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--config", "MIGRATEGATE_CONFIG", "alembic.ini", "Path to alembic.ini."),
    Option("--section", "MIGRATEGATE_SECTION", "alembic", "Section of alembic.ini to use."),
    Option("--target", "MIGRATEGATE_TARGET", "head", "Revision to upgrade to."),
    Option(
        "--database-url-env",
        "MIGRATEGATE_DATABASE_URL_ENV",
        "DATABASE_URL",
        "Environment variable that holds the async database URL.",
    ),
    Option(
        "--driver",
        "MIGRATEGATE_DRIVER",
        Driver.AUTO.value,
        "Sync driver for Alembic.",
        choices=tuple(d.value for d in Driver),
    ),
    Option(
        "--lock-timeout",
        "MIGRATEGATE_LOCK_TIMEOUT",
        "300",
        "Seconds to wait for the migration advisory lock.",
    ),
    Option(
        "--pg-lock-timeout",
        "MIGRATEGATE_PG_LOCK_TIMEOUT",
        "5",
        "PostgreSQL lock_timeout (seconds) of the migration's connections: traffic queued"
        " behind a revision's lock request waits at most this long; 0 keeps the server's.",
    ),
    Option(
        "--statement-timeout",
        "MIGRATEGATE_STATEMENT_TIMEOUT",
        "0",
        "PostgreSQL statement_timeout (seconds) of the migration's connections; 0 keeps the"
        " server's.",
    ),
    Option(
        "--lock-retries",
        "MIGRATEGATE_LOCK_RETRIES",
        "5",
        "Times the whole upgrade runs again after a lock_timeout, with backoff and jitter.",
    ),
    Option(
        "--result-file",
        "MIGRATEGATE_RESULT_FILE",
        None,
        "Write the JSON result here (in a Job: /dev/termination-log).",
    ),
    Option(
        "--if-ahead",
        "MIGRATEGATE_IF_AHEAD",
        IfAhead.SUCCEED.value,
        "When the database is ahead of the image's scripts.",
        choices=tuple(i.value for i in IfAhead),
    ),
    Option(
        "--timeout",
        "MIGRATEGATE_WAIT_TIMEOUT",
        "600",
        "`wait`: seconds to wait for the database to reach the target.",
    ),
)

# `-x key=value` may repeat; its environment form holds one key=value per line.
X_ARG_FLAG = "-x"
X_ARG_ENV = "MIGRATEGATE_X_ARGS"

# The environment variable the runner exports with the derived sync URL for env.py.
SYNC_URL_ENV = "DATABASE_URL_SYNC"


class ResultKey:
    """Keys of the JSON object written to --result-file (the termination message)."""

    OUTCOME = "outcome"
    EXIT_CODE = "exitCode"
    FROM_REVISIONS = "fromRevisions"
    TO_REVISIONS = "toRevisions"
    TARGET_REVISIONS = "targetRevisions"
    APPLIED_REVISIONS = "appliedRevisions"
    FAILED_REVISION = "failedRevision"
    DURATION_SECONDS = "durationSeconds"
    ERROR_CLASS = "errorClass"
    MESSAGE = "message"
    WARNINGS = "warnings"
    DRIVER = "driver"  # the driver Alembic ran with: psycopg, psycopg2 or asyncpg
    LOCK_ATTEMPTS = "lockAttempts"  # runs of the upgrade; > 1 after lock_timeout retries
    RUNNER_VERSION = "runnerVersion"
    # The database's heads that this image's scripts do not know (the database is ahead, as
    # after a rollback); [] otherwise. The operator matches them with status.contracted.
    UNKNOWN_REVISIONS = "unknownRevisions"
    # `migrate --plan-hash H` refused (exit 2, BadInput): the pending SQL no longer hashes to H.
    # Present (true) only then; the result's planHash is what the SQL hashes to now.
    STALE_PLAN = "stalePlan"


class PlanKey:
    """Keys `plan` adds to its result beside ResultKey's (runner/plan.py; README).

    All present whenever a plan was made (outcome Planned or UpToDate); absent when it
    failed. The counts are exact even when the lists were clipped to fit the message.
    """

    PLAN_HASH = "planHash"  # sha256 hex of the rendered plan (the SQL printed to stdout)
    PENDING_REVISIONS = "pendingRevisions"  # oldest first
    STATEMENT_COUNT = "statementCount"  # revisions' statements: no BEGIN/COMMIT, no version table
    FINDINGS = "findings"  # [{FindingKey...}], most severe first, clipped
    FINDING_COUNTS = "findingCounts"  # {severity: count} over all findings, every severity
    UNRENDERABLE = "unrenderable"  # [{UnrenderableKey...}], clipped
    UNRENDERABLE_COUNT = "unrenderableCount"
    LINT_STATUS = "lintStatus"  # LintStatus
    LINTER = "linter"  # "squawk 2.70.0", or null when it did not run
    LINT_REASON = "lintReason"  # why linting was skipped or failed; null when Linted


class FindingKey:
    """Keys of one entry of a plan result's `findings`."""

    REVISION = "revision"
    RULE = "rule"  # squawk's rule name, e.g. require-concurrent-index-creation
    SEVERITY = "severity"  # Severity
    MESSAGE = "message"  # squawk's message, one line, clipped


class UnrenderableKey:
    """Keys of one entry of a plan result's `unrenderable`."""

    REVISION = "revision"
    REASON = "reason"


class Severity(str, enum.Enum):
    """How much a finding can hurt; declared from low to high (compare with SEVERITIES)."""

    LOW = "low"  # advice and style
    MEDIUM = "medium"  # risky depending on the data or the clients
    HIGH = "high"  # blocks reads or writes for a scan or rewrite, loses data, breaks clients


SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)  # low to high


class LintStatus(str, enum.Enum):
    """Whether a plan's SQL was linted; anything but LINTED means "findings unknown"."""

    LINTED = "Linted"
    SKIPPED = "Skipped"  # squawk not found, or --squawk off
    FAILED = "Failed"  # squawk was found but could not run or its report was unreadable


# `plan`'s own options (only the plan subcommand takes them).
PLAN_OPTIONS: tuple[Option, ...] = (
    Option(
        "--from",
        "MIGRATEGATE_PLAN_FROM",
        None,
        "Plan from these revisions (comma-separated, or base) instead of reading the database;"
        " nothing connects (CI without a database).",
        dest="from_revisions",
    ),
    Option(
        "--squawk",
        "MIGRATEGATE_SQUAWK",
        None,
        "Path of the squawk binary, or off; default: beside the payload, on PATH, beside Python.",
    ),
    Option(
        "--fail-on",
        "MIGRATEGATE_PLAN_FAIL_ON",
        None,
        "Exit 1 on a finding of this severity or above, an unrenderable revision, or no lint.",
        choices=SEVERITIES,
    ),
)
SQUAWK_OFF = "off"

# `migrate`'s own options (only the migrate subcommand takes them).
MIGRATE_OPTIONS: tuple[Option, ...] = (
    Option(
        "--plan-hash",
        "MIGRATEGATE_PLAN_HASH",
        None,
        "Apply only the plan a person approved: under the lock, render the pending revisions"
        " again and exit 2 (BadInput, stalePlan) unless they hash to this planHash.",
    ),
)


class Phase(str, enum.Enum):
    """`--phase`: which half of an expand/contract change a run applies (issue 12)."""

    EXPAND = "expand"  # every head but the contract branch's: before the new pods start
    CONTRACT = "contract"  # the contract branch (exit 2 while expand is pending): after rollout
    ALL = "all"  # everything: `alembic upgrade heads`


# Revisions on the branch with this Alembic branch label are the contract phase.
DEFAULT_CONTRACT_BRANCH = "contract"


def phase_keys(
    phase: str,
    has_contract_branch: bool,
    label: str,
    expand: Sequence[str],
    contract: Sequence[str],
) -> dict[str, Any]:
    """The result keys (PhaseKey) that say what a run's phase was."""
    return {
        PhaseKey.PHASE: phase,
        PhaseKey.HAS_CONTRACT_BRANCH: has_contract_branch,
        PhaseKey.CONTRACT_BRANCH: label,
        PhaseKey.EXPAND_HEADS: list(expand),
        PhaseKey.CONTRACT_HEADS: list(contract),
    }


# Targets that name every head: a phase can split them; any other target names one place.
WHOLE_TARGETS = ("head", "heads")

# Commands that take PHASE_OPTIONS (`url` reads no scripts).
PHASE_COMMANDS: tuple[str, ...] = ("migrate", "wait", "check", "plan")

PHASE_OPTIONS: tuple[Option, ...] = (
    Option(
        "--phase",
        "MIGRATEGATE_PHASE",
        None,
        "expand (before the rollout), contract (after it) or all; default: expand when the"
        " scripts have a contract branch and the target is head or heads, otherwise all.",
        choices=tuple(p.value for p in Phase),
    ),
    Option(
        "--contract-branch",
        "MIGRATEGATE_CONTRACT_BRANCH",
        DEFAULT_CONTRACT_BRANCH,
        "Alembic branch label of the contract revisions (a branch with its own base).",
    ),
)


class PhaseKey:
    """Keys every result of migrate, check, wait and plan carries once the scripts were read.

    The operator learns from any of them (the expand Job's, say) whether the image has a
    contract branch, and can show "expand: 0004, contract: 0004c".
    """

    PHASE = "phase"  # Phase value this run resolved to (auto made explicit)
    HAS_CONTRACT_BRANCH = "hasContractBranch"  # bool: the scripts have a contract branch
    CONTRACT_BRANCH = "contractBranch"  # the label looked for (--contract-branch)
    EXPAND_HEADS = "expandHeads"  # the scripts' heads off the contract branch (all without one)
    CONTRACT_HEADS = "contractHeads"  # the contract branch's head; [] without one


# Kubernetes keeps at most 4096 bytes of a termination message; the runner stays under it.
RESULT_MAX_BYTES = 4096

# Where the migrategate image keeps the runner payload, and where an injecting
# Job mounts it in the application container (it goes on PYTHONPATH there).
IMAGE_PAYLOAD_DIR = "/opt/migrategate/payload"
INJECTED_PAYLOAD_DIR = "/migrategate"

# The injecting init container runs this in the migrategate image: it copies the
# payload into the shared emptyDir mounted at INJECTED_PAYLOAD_DIR.
INSTALL_COMMAND: tuple[str, ...] = ("cp", "-R", IMAGE_PAYLOAD_DIR + "/.", INJECTED_PAYLOAD_DIR)

# The application container then runs this script with its own `python`. Running
# a file (not `-m`, not PYTHONPATH) puts the payload first on sys.path without
# overriding a PYTHONPATH the application image may set.
INJECTED_ENTRYPOINT = INJECTED_PAYLOAD_DIR + "/run.py"

# The squawk binary, relative to the payload's root (IMAGE_PAYLOAD_DIR in the image,
# INJECTED_PAYLOAD_DIR once copied): `plan` looks for it there first.
PAYLOAD_SQUAWK = "bin/squawk"
