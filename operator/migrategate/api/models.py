"""Pydantic models of the DatabaseMigration spec and status: the single schema source.

The CRD in crds/ is generated from these models (see crd.py), so descriptions
here are what `kubectl explain dbm.spec...` prints. Field names are camelCase on
the wire; the Python attributes are snake_case.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from migrategate.runner.contract import Driver, IfAhead, LintStatus, Severity

# Kubernetes types the operator passes through to the pod unchanged; the API
# server keeps their content (x-kubernetes-preserve-unknown-fields).
_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
K8sObject = Annotated[dict[str, Any], Field(json_schema_extra=_PRESERVE)]
K8sList = list[Annotated[dict[str, Any], Field(json_schema_extra=_PRESERVE)]]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# A duration as PostgreSQL and Kubernetes users write it: 500ms, 5s, 2m ("0" turns it off).
DURATION = r"^(0|[0-9]+(\.[0-9]+)?(ms|s|m))$"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def duration_seconds(value: str) -> float:
    """Seconds in a DURATION string (the pattern has been checked)."""
    for unit in ("ms", "s", "m"):  # "ms" before "s" and "m"
        if value.endswith(unit):
            return float(value[: -len(unit)]) * _DURATION_UNITS[unit]
    return float(value)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",  # the API server prunes unknown fields; stay lenient on read
        use_enum_values=True,
        validate_default=True,  # so defaults become plain values too, as parsed input does
    )


# Choices the spec only carries and the controller compares: Literal, because the model
# stores plain strings (use_enum_values). Phase and PhaseState below are emitted by name.
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
RunnerMode = Literal["inject", "installed"]
ApprovalPolicy = Literal["Auto", "OnFindings", "Always"]
ContractPolicy = Literal["Auto", "Manual"]
ConditionStatus = Literal["True", "False", "Unknown"]


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    AWAITING_APPROVAL = "AwaitingApproval"  # a plan waits for migrategate.io/approve


class PhaseState(enum.StrEnum):
    """Where one half (expand or contract) of a migration stands."""

    PENDING = "Pending"
    WAITING_FOR_ROLLOUT = "WaitingForRollout"  # contract: old-image pods still run
    AWAITING_APPROVAL = "AwaitingApproval"  # contract, policy Manual: migrategate.io/contract
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class SecretKeyRef(_Model):
    """A key of a Secret in the DatabaseMigration's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key within the Secret.")


class DatabaseURL(_Model):
    """Where the application's async URL (postgresql+asyncpg://...) lives."""

    secret_key_ref: SecretKeyRef = Field(
        description="The Secret key holding the async URL. Only the Job's pod reads it; "
        "the operator never does.",
    )


class AlembicSpec(_Model):
    """What the runner runs, and where, inside the application's image."""

    config: str = Field(
        "alembic.ini", min_length=1, description="Path to alembic.ini, relative to workingDir."
    )
    working_dir: str | None = Field(
        None,
        description="Working directory of the migration container. "
        "Defaults to the image's own working directory.",
    )
    section: str = Field("alembic", min_length=1, description="Section of alembic.ini to use.")
    target: str = Field(
        "head", min_length=1, description="Revision to upgrade to: head, heads or a revision id."
    )
    x_args: list[Annotated[str, Field(pattern=r"^[^=]+=.*$")]] = Field(
        default_factory=list,
        description="Extra `-x key=value` arguments for env.py.",
    )


class RunnerSpec(_Model):
    """How the runner gets into the pod and how it behaves."""

    mode: RunnerMode = Field(
        "inject",
        description="inject: an init container copies the runner from the migrategate image "
        "into the application's pod. installed: the application image has migrategate "
        "installed and runs `migrategate migrate`.",
    )
    driver: Driver = Field(
        Driver.AUTO,
        description="Sync driver for Alembic. auto picks psycopg, then psycopg2, then asyncpg.",
    )
    lock_timeout_seconds: int = Field(
        300, ge=1, description="Seconds to wait for the migration advisory lock."
    )
    lock_timeout: str = Field(
        "5s",
        pattern=DURATION,
        description="PostgreSQL lock_timeout of the migration's connections (500ms, 5s, 1m): "
        "a revision waits at most this long for a table lock, so traffic queued behind its "
        "lock request waits no longer; then the whole upgrade is retried (lockRetries). "
        "0 keeps the server's setting.",
    )
    statement_timeout: str = Field(
        "0",
        pattern=DURATION,
        description="PostgreSQL statement_timeout of the migration's connections "
        "(500ms, 30s, 10m); a statement running longer fails the revision. "
        "0 (the default) keeps the server's setting.",
    )
    lock_retries: int = Field(
        5,
        ge=0,
        le=100,
        description="Times the whole upgrade runs again after hitting lockTimeout, with "
        "doubling delays (1 s to 30 s, jittered). Then the Job exits 3 (transient) and "
        "retry.limit applies.",
    )
    if_ahead: IfAhead = Field(
        IfAhead.SUCCEED,
        description="When the database holds a revision the image does not know "
        "(e.g. after a rollback): succeed with a warning, or fail.",
    )


class GateSpec(_Model):
    """The rollout gate."""

    deployments: list[Annotated[str, Field(pattern=DNS_LABEL, max_length=253)]] = Field(
        default_factory=list,
        description="Deployments in this namespace whose new pods wait for this migration.",
    )


class JobSpec(_Model):
    """What goes into the migration Job and its pod."""

    service_account_name: str | None = Field(
        None, description="ServiceAccount of the migration pod. Without one, no token is mounted."
    )
    resources: K8sObject | None = Field(
        None, description="Resources of the migration container (core/v1 ResourceRequirements)."
    )
    node_selector: dict[str, str] | None = Field(None, description="Pod nodeSelector.")
    tolerations: K8sList | None = Field(None, description="Pod tolerations.")
    affinity: K8sObject | None = Field(None, description="Pod affinity (core/v1 Affinity).")
    image_pull_secrets: K8sList | None = Field(
        None, description="Pod imagePullSecrets: [{name: ...}]."
    )
    security_context: K8sObject | None = Field(
        None,
        description="Container securityContext, merged over the restricted defaults "
        "(runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, "
        "all capabilities dropped, RuntimeDefault seccomp).",
    )
    pod_security_context: K8sObject | None = Field(
        None,
        description="Pod securityContext, merged over the restricted defaults "
        "(runAsNonRoot, RuntimeDefault seccomp) and runAsUser/runAsGroup 65532, which "
        "apply only when runAsUser is set neither here nor in securityContext.",
    )
    env: K8sList | None = Field(
        None,
        description="Extra environment of the migration container (core/v1 EnvVar). "
        "A name set here replaces the operator's own (HOME=/tmp, PYTHONUNBUFFERED=1, "
        "PYTHONDONTWRITEBYTECODE=1, DATABASE_URL).",
    )
    env_from: K8sList | None = Field(
        None, description="Extra envFrom sources of the migration container."
    )
    labels: dict[str, str] | None = Field(None, description="Extra labels on the Job and pod.")
    annotations: dict[str, str] | None = Field(
        None, description="Extra annotations on the Job and pod."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Deadline of one attempt; exceeding it counts as transient."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Let Kubernetes delete finished Jobs after this many seconds."
    )


class RetrySpec(_Model):
    """Retries of transient failures (database unreachable, lock timeout, eviction, deadline)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # has(): the API server also checks this rule against the bare default {}.
                    "rule": "!has(self.maxBackoffSeconds) || !has(self.backoffSeconds)"
                    " || self.maxBackoffSeconds >= self.backoffSeconds",
                    "message": "maxBackoffSeconds must be >= backoffSeconds",
                }
            ]
        }
    )

    limit: int = Field(3, ge=0, le=100, description="Retries after the first attempt.")
    backoff_seconds: int = Field(10, ge=1, description="Delay before the first retry.")
    max_backoff_seconds: int = Field(300, ge=1, description="Cap of the doubling delay.")

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetrySpec:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("maxBackoffSeconds must be >= backoffSeconds")
        return self


class ApprovalSpec(_Model):
    """Whether a person approves the migration's SQL before it runs."""

    policy: ApprovalPolicy = Field(
        "Auto",
        description="Auto: migrate at once (no plan). OnFindings: first run a plan Job "
        "(`migrategate plan`: the pending SQL rendered offline, linted, hashed) and wait for "
        "approval when it has a finding of minSeverity or above, an unrenderable revision, or "
        "was not linted. Always: plan, and wait for approval of any pending revision. Approve "
        "with `kubectl annotate dbm/<name> migrategate.io/approve=<status.plan.hash>`.",
    )
    min_severity: Severity = Field(
        Severity.HIGH,
        description="OnFindings: the least severity (low, medium, high) that needs approval.",
    )


class ContractSpec(_Model):
    """The contract phase: revisions on the contract branch run only after the rollout."""

    policy: ContractPolicy = Field(
        "Auto",
        description="Auto: run the contract Job as soon as the rollout has finished. Manual: "
        "then wait for `kubectl annotate dbm/<name> migrategate.io/contract=<status.contentHash>`.",
    )
    branch: str = Field(
        "contract",
        min_length=1,
        description="Alembic branch label of the contract revisions (a branch with its own "
        "base). Images whose scripts have no such branch migrate in one phase, as before.",
    )


class DatabaseMigrationSpec(_Model):
    """Desired state: migrate the database of `databaseURL` to the revisions in `image`."""

    image: str = Field(
        min_length=1,
        pattern=r"^\S+$",
        description="The application's image, which holds alembic.ini and the revision scripts.",
    )
    image_pull_policy: PullPolicy | None = Field(
        None, description="Pull policy of the application image, as on a container."
    )
    database_url: DatabaseURL = Field(alias="databaseURL", description=DatabaseURL.__doc__)
    alembic: AlembicSpec = Field(default_factory=AlembicSpec, description=AlembicSpec.__doc__)
    runner: RunnerSpec = Field(default_factory=RunnerSpec, description=RunnerSpec.__doc__)
    gate: GateSpec = Field(default_factory=GateSpec, description=GateSpec.__doc__)
    job: JobSpec = Field(default_factory=JobSpec, description=JobSpec.__doc__)
    retry: RetrySpec = Field(default_factory=RetrySpec, description=RetrySpec.__doc__)
    history_limit: int = Field(
        3, ge=0, le=100, description="Finished Jobs to keep; older ones are deleted."
    )
    suspend: bool = Field(False, description="Hold new Jobs. A running Job is left to finish.")
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec, description=ApprovalSpec.__doc__)
    contract: ContractSpec = Field(default_factory=ContractSpec, description=ContractSpec.__doc__)


class Condition(_Model):
    """A kstatus condition."""

    type: str = Field(description="Ready, Reconciling or Stalled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason of the last transition.")
    message: str = Field("", description="Human-readable detail.")
    last_transition_time: str | None = Field(
        None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation this condition was computed for."
    )


class PlanFinding(_Model):
    """One lint finding of a plan."""

    revision: str = Field(description="The revision whose SQL has it.")
    rule: str = Field(description="The linter's rule, e.g. require-concurrent-index-creation.")
    severity: Severity = Field(description="low, medium or high.")
    message: str = Field("", description="The linter's message, clipped.")


class PlanUnrenderable(_Model):
    """A revision the plan could not render offline."""

    revision: str = Field(description="The revision.")
    reason: str = Field("", description="Why it could not be rendered.")


class PlanStatus(_Model):
    """The last plan (spec.approval.policy other than Auto): what would run, and its risks."""

    hash: str | None = Field(
        None, description="planHash: approve it with the migrategate.io/approve annotation."
    )
    content_hash: str | None = Field(None, description="The spec content it was made for.")
    job_name: str | None = Field(None, description="The plan Job.")
    logs_command: str | None = Field(
        None, description="The command that prints the plan's SQL (the plan Job's log)."
    )
    revisions: list[str] | None = Field(None, description="Pending revisions, oldest first.")
    statement_count: int | None = Field(None, description="SQL statements of those revisions.")
    finding_counts: dict[str, int] | None = Field(
        None, description="Findings by severity (low, medium, high), exact."
    )
    findings: list[PlanFinding] | None = Field(None, description="Findings, most severe first.")
    unrenderable: list[PlanUnrenderable] | None = Field(
        None, description="Revisions that could not be rendered offline, with the reason."
    )
    lint_status: LintStatus | None = Field(None, description="Linted, Skipped or Failed.")
    linter: str | None = Field(None, description="The linter and its version.")
    lint_reason: str | None = Field(None, description="Why linting was skipped or failed.")
    needs_approval: bool | None = Field(
        None, description="Whether the policy holds this plan until it is approved."
    )
    approved: bool | None = Field(
        None, description="The migrategate.io/approve annotation names this plan's hash."
    )
    planned_at: str | None = Field(None, description="When the plan Job finished.")


class PhaseStatus(_Model):
    """One half of an expand/contract migration."""

    state: PhaseState = Field(
        description="Pending, WaitingForRollout, AwaitingApproval, Running, Succeeded or Failed."
    )
    job_name: str | None = Field(None, description="Its Job (current or last attempt).")
    target_revisions: list[str] | None = Field(
        None, description="The phase's head in the image's scripts."
    )
    applied_revisions: list[str] | None = Field(
        None, description="Revisions its last Job applied, in order."
    )
    finished_at: str | None = Field(None, description="When its Job finished.")
    message: str | None = Field(
        None, description="What it waits for (the rollout's progress) or its outcome."
    )


class PhasesStatus(_Model):
    """Both halves, present when the image's scripts have a contract branch."""

    expand: PhaseStatus | None = Field(None, description="Before the rollout: everything else.")
    contract: PhaseStatus | None = Field(
        None, description="After the rollout: the contract branch."
    )


class ContractedStatus(_Model):
    """The last contract phase that ran: rolling back to an older image past it is unsafe."""

    image: str = Field(description="The image whose contract phase ran.")
    revisions: list[str] = Field(
        default_factory=list, description="The contract branch's head it left the database at."
    )
    finished_at: str | None = Field(None, description="When it finished.")


class DatabaseMigrationStatus(_Model):
    """Observed state, written by the operator (kstatus-compatible)."""

    observed_generation: int | None = Field(
        None, description="metadata.generation the status describes."
    )
    phase: Phase | None = Field(
        None, description="Pending, Running, AwaitingApproval, Succeeded or Failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling and Stalled.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    job_name: str | None = Field(None, description="The Job of the current or last attempt.")
    content_hash: str | None = Field(
        None, description="Hash of the spec content the status describes (part of Job names)."
    )
    attempts: int | None = Field(None, description="Attempts made for the current content.")
    next_attempt_at: str | None = Field(
        None, description="When the next retry of a transient failure starts."
    )
    image: str | None = Field(None, description="The image of the current or last attempt.")
    migrated_image: str | None = Field(
        None, description="The last image whose migration succeeded. The gate releases its pods."
    )
    current_revision: list[str] | None = Field(
        None, description="Heads of the database after the last attempt."
    )
    target_revision: list[str] | None = Field(None, description="Heads the image targets.")
    applied_revisions: list[str] | None = Field(
        None, description="Revisions the last attempt applied, in order."
    )
    warnings: list[str] | None = Field(None, description="Warnings of the last attempt.")
    started_at: str | None = Field(None, description="Start of the current or last attempt.")
    finished_at: str | None = Field(None, description="End of the last attempt.")
    duration_seconds: float | None = Field(None, description="Runner duration of the last attempt.")
    message: str | None = Field(None, description="Last outcome, masked and truncated.")
    plan: PlanStatus | None = Field(None, description=PlanStatus.__doc__)
    ignored_approval: str | None = Field(
        None,
        description="The last migrategate.io/approve value ignored because it names no "
        "current plan (an Event said why).",
    )
    phases: PhasesStatus | None = Field(None, description=PhasesStatus.__doc__)
    contracted: ContractedStatus | None = Field(None, description=ContractedStatus.__doc__)


class DatabaseMigration(_Model):
    """Runs Alembic migrations of an application image once, and gates its new pods."""

    spec: DatabaseMigrationSpec
    status: DatabaseMigrationStatus = Field(default_factory=DatabaseMigrationStatus)
