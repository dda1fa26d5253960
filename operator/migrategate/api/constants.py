"""Names shared by the CRD, the operator and the gate: group, version, labels, annotations."""

GROUP = "migrategate.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DatabaseMigration"
LIST_KIND = "DatabaseMigrationList"
PLURAL = "databasemigrations"
SINGULAR = "databasemigration"
SHORT_NAMES = ("dbm",)
CATEGORIES = ("migrategate",)
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels the operator puts on every Job and pod it creates.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "migrategate"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT_MIGRATION = "migration"
# Plan Jobs (spec.approval.policy other than Auto) carry this label; migration Jobs do not.
LABEL_JOB_KIND = f"{GROUP}/job-kind"
JOB_KIND_PLAN = "plan"
# Contract Jobs (`--phase contract`, after the rollout) carry job-kind contract.
JOB_KIND_CONTRACT = "contract"
LABEL_MIGRATION = f"{GROUP}/migration"  # the DatabaseMigration's name
LABEL_CONTENT_HASH = f"{GROUP}/content-hash"  # hash of what the Job runs
LABEL_ATTEMPT = f"{GROUP}/attempt"  # 1 for the first Job of a content, then 2, 3...

# Annotations.
ANNOTATION_RERUN = f"{GROUP}/rerun"  # any new value forces a new Job
ANNOTATION_IMAGE = f"{GROUP}/image"  # on Jobs: the application image migrated
# `kubectl annotate dbm/<name> migrategate.io/approve=<planHash>` approves that plan.
ANNOTATION_APPROVE = f"{GROUP}/approve"
ANNOTATION_PLAN_HASH = f"{GROUP}/plan-hash"  # on migration Jobs: the approved plan they apply
# spec.contract.policy Manual: `kubectl annotate dbm/<name> migrategate.io/contract=<contentHash>`
# lets the contract Job of that content run once the rollout has finished.
ANNOTATION_CONTRACT = f"{GROUP}/contract"
# The gate: pods name their DatabaseMigration with this annotation and wait on this gate.
ANNOTATION_MIGRATION = f"{GROUP}/migration"
SCHEDULING_GATE = f"{GROUP}/migration"

# kopf keeps its progress and diff-base under this prefix. It is a sub-domain of
# GROUP rather than GROUP itself: kopf hides every annotation under its own
# prefix from change detection, and the rerun annotation must stay visible.
KOPF_PREFIX = f"kopf.{GROUP}"

# Container names in the migration Job's pod.
INIT_CONTAINER_NAME = "install-runner"
CONTAINER_NAME = "migrate"
RUNNER_VOLUME_NAME = "migrategate-runner"
TMP_VOLUME_NAME = "migrategate-tmp"

# Condition types (kstatus).
CONDITION_READY = "Ready"
CONDITION_RECONCILING = "Reconciling"
CONDITION_STALLED = "Stalled"
# The Ready condition's reason (and the phase) while a plan waits for a person's approval.
REASON_AWAITING_APPROVAL = "AwaitingApproval"
# The Ready condition's reasons between the expand and the contract phase.
REASON_WAITING_FOR_ROLLOUT = "WaitingForRollout"
REASON_AWAITING_CONTRACT_APPROVAL = "AwaitingContractApproval"
REASON_CONTRACT_RUNNING = "ContractJobRunning"
