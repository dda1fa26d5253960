"""The Job builder: a DatabaseMigration spec in, a batch/v1 Job dict out. No I/O.

Runner flags come from the contract's OPTIONS table, so the flags a Job passes
and the flags the runner accepts cannot drift apart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from migrategate.api import constants as c
from migrategate.api.models import DatabaseMigrationSpec, JobSpec, duration_seconds
from migrategate.runner import contract

DATABASE_URL_ENV = "DATABASE_URL"
RESULT_FILE = "/dev/termination-log"

RESTRICTED_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The user and group the pod runs as unless spec.job sets runAsUser. Numeric, so the kubelet can
# verify runAsNonRoot for any image: one that runs as root (no USER) would be refused, and so
# would one with a named USER ("image has non-numeric user"). 65532 is the conventional
# "nonroot" of distroless images and the UID of the migrategate image.
DEFAULT_USER = 65532
# A writable /tmp (and HOME) for a read-only root filesystem: libraries that env.py imports
# may want a temporary file or a cache under ~.
TMP_DIR = "/tmp"
TMP_SIZE_LIMIT = "64Mi"
# Exit codes of a container stopped from outside: SIGKILL (the grace period after SIGTERM ran
# out) and SIGTERM (the runner stops on it). The API wants them in ascending order.
SIGNALLED_EXIT_CODES = (137, int(contract.ExitCode.TERMINATED))
# backoffLimit 0 fails the Job on any failed pod; these rules only make the Job controller say
# why in the Job's Failed condition (reason PodFailurePolicy). A deleted, evicted or drained pod
# is gone by the time its Job fails, and with it the exit code and the DisruptionTarget condition
# that tell a disruption (worth a retry) from a failed migration.
POD_FAILURE_POLICY: dict[str, Any] = {
    "rules": [
        {
            "action": "FailJob",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        },
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": c.CONTAINER_NAME,
                "operator": "In",
                "values": list(SIGNALLED_EXIT_CODES),
            },
        },
    ]
}
# The init container only copies a few hundred kB.
INIT_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"memory": "64Mi"},
}


@dataclass(frozen=True)
class Owner:
    """The DatabaseMigration a Job belongs to."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class JobRequest:
    """Everything one Job depends on."""

    owner: Owner
    spec: DatabaseMigrationSpec
    job_name: str
    content_hash: str
    attempt: int
    runner_image: str
    runner_image_pull_policy: str = "IfNotPresent"
    plan: bool = False  # a plan Job: `migrategate plan` (no --fail-on), changes nothing
    plan_hash: str | None = None  # a migration Job: apply only this approved plan
    contract: bool = False  # the contract Job (`--phase contract`), after the rollout


def selector_labels(migration: str) -> dict[str, str]:
    """Labels that select every Job and pod of one DatabaseMigration."""
    return {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_MIGRATION: migration}


def phase_of(spec: DatabaseMigrationSpec, contract_job: bool = False) -> str | None:
    """The `--phase` a Job passes: contract for the contract Job, else expand for a whole target.

    An explicit revision target keeps today's single run (the runner's default, all): the
    runner splits only head or heads into phases.
    """
    if contract_job:
        return contract.Phase.CONTRACT.value
    if spec.alembic.target in contract.WHOLE_TARGETS:
        return contract.Phase.EXPAND.value
    return None


def runner_args(
    spec: DatabaseMigrationSpec,
    plan: bool = False,
    plan_hash: str | None = None,
    contract_job: bool = False,
) -> list[str]:
    """`migrate` (or `plan`) plus flags, in the order of contract.OPTIONS.

    A migration of an approved plan adds `--plan-hash` (contract.MIGRATE_OPTIONS); every
    Job names its phase (contract.PHASE_OPTIONS), see phase_of.
    """
    values = {
        "config": spec.alembic.config,
        "section": spec.alembic.section,
        "target": spec.alembic.target,
        "database_url_env": DATABASE_URL_ENV,
        "driver": spec.runner.driver,
        "lock_timeout": str(spec.runner.lock_timeout_seconds),
        "pg_lock_timeout": f"{duration_seconds(spec.runner.lock_timeout):g}",
        "statement_timeout": f"{duration_seconds(spec.runner.statement_timeout):g}",
        "lock_retries": str(spec.runner.lock_retries),
        "result_file": RESULT_FILE,
        "if_ahead": spec.runner.if_ahead,
    }
    known = {o.name for o in contract.OPTIONS}
    unknown = set(values) - known
    if unknown:  # a renamed option in the contract must fail here, in unit tests
        raise KeyError(f"not in contract.OPTIONS: {sorted(unknown)}")
    args = ["plan" if plan else "migrate"]
    for option in contract.OPTIONS:
        if option.name in values:
            args += [option.flag, str(values[option.name])]
    if plan_hash and not plan:
        args += [_flag(contract.MIGRATE_OPTIONS, "plan_hash"), plan_hash]
    phase = phase_of(spec, contract_job)
    if phase is not None:
        args += [_flag(contract.PHASE_OPTIONS, "phase"), phase]
    if spec.contract.branch != contract.DEFAULT_CONTRACT_BRANCH:
        args += [_flag(contract.PHASE_OPTIONS, "contract_branch"), spec.contract.branch]
    for kv in spec.alembic.x_args:
        args += [contract.X_ARG_FLAG, kv]
    return args


def _flag(options: tuple[contract.Option, ...], name: str) -> str:
    (option,) = (o for o in options if o.name == name)
    return option.flag


def command(req: JobRequest) -> list[str]:
    """The container command: the installed CLI or the injected entrypoint, then the args."""
    args = runner_args(req.spec, req.plan, req.plan_hash, req.contract)
    if req.spec.runner.mode == "installed":
        return ["migrategate", *args]
    return ["python", contract.INJECTED_ENTRYPOINT, *args]


def merged(defaults: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    """Deep-merge the user's settings over the defaults (the user wins key by key)."""
    out = copy.deepcopy(defaults)
    for key, value in (user or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_job_defaults(
    spec: DatabaseMigrationSpec, defaults: JobSpec | None
) -> DatabaseMigrationSpec:
    """The spec with its `job` merged over the operator's defaults (the chart's jobDefaults).

    Maps merge key by key; for anything else the DatabaseMigration's own value wins.
    """
    if defaults is None:
        return spec
    own = spec.job.model_dump(exclude_none=True)
    job = merged(defaults.model_dump(exclude_none=True), own)
    return spec.model_copy(update={"job": JobSpec.model_validate(job)})


def container_env(spec: DatabaseMigrationSpec) -> list[dict[str, Any]]:
    """Our variables where the user left them unset, then the user's own."""
    ref = spec.database_url.secret_key_ref
    ours: list[dict[str, Any]] = [
        {
            "name": DATABASE_URL_ENV,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        },
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # The root filesystem is read-only; do not even try to write .pyc files.
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        # The image's HOME is on that read-only root (or "/" for a UID without a passwd entry).
        {"name": "HOME", "value": TMP_DIR},
    ]
    user = copy.deepcopy(spec.job.env or [])
    taken = {e.get("name") for e in user}
    return [e for e in ours if e["name"] not in taken] + user


def main_container(req: JobRequest) -> dict[str, Any]:
    spec = req.spec
    container: dict[str, Any] = {
        "name": c.CONTAINER_NAME,
        "image": spec.image,
        "command": command(req),
        "env": container_env(spec),
        "securityContext": merged(RESTRICTED_CONTAINER, spec.job.security_context),
        "terminationMessagePath": RESULT_FILE,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    _put(container, "imagePullPolicy", spec.image_pull_policy)
    _put(container, "workingDir", spec.alembic.working_dir)
    _put(container, "envFrom", copy.deepcopy(spec.job.env_from))
    _put(container, "resources", copy.deepcopy(spec.job.resources))
    if spec.runner.mode == "inject":
        container["volumeMounts"] = [
            {
                "name": c.RUNNER_VOLUME_NAME,
                "mountPath": contract.INJECTED_PAYLOAD_DIR,
                "readOnly": True,
            }
        ]
    return _with_tmp(container)


def init_container(req: JobRequest) -> dict[str, Any]:
    return _with_tmp(
        {
            "name": c.INIT_CONTAINER_NAME,
            "image": req.runner_image,
            "imagePullPolicy": req.runner_image_pull_policy,
            "command": list(contract.INSTALL_COMMAND),
            "volumeMounts": [
                {"name": c.RUNNER_VOLUME_NAME, "mountPath": contract.INJECTED_PAYLOAD_DIR}
            ],
            "securityContext": merged(RESTRICTED_CONTAINER, req.spec.job.security_context),
            "resources": copy.deepcopy(INIT_RESOURCES),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    )


def _with_tmp(container: dict[str, Any]) -> dict[str, Any]:
    """A writable /tmp for a container with a read-only root, unless it mounts one already."""
    read_only = (container.get("securityContext") or {}).get("readOnlyRootFilesystem")
    mounts = container.get("volumeMounts") or []
    if read_only and not any(m.get("mountPath") == TMP_DIR for m in mounts):
        container["volumeMounts"] = [*mounts, {"name": c.TMP_VOLUME_NAME, "mountPath": TMP_DIR}]
    return container


def pod_security_context(job: JobSpec) -> dict[str, Any]:
    """The restricted defaults and a numeric non-root user, then the user's own settings.

    The default user applies only when neither the pod's nor the container's security
    context names a runAsUser (a container's setting overrides the pod's anyway); the
    default group only along with the default user, and only when no runAsGroup is set.
    """
    own_pod = job.pod_security_context or {}
    own_container = job.security_context or {}
    defaults = dict(RESTRICTED_POD)
    if "runAsUser" not in own_pod and "runAsUser" not in own_container:
        defaults["runAsUser"] = DEFAULT_USER
        if "runAsGroup" not in own_pod and "runAsGroup" not in own_container:
            defaults["runAsGroup"] = DEFAULT_USER
    return merged(defaults, own_pod)


def pod_spec(req: JobRequest) -> dict[str, Any]:
    job = req.spec.job
    containers = [main_container(req)]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(job),
        "containers": containers,
    }
    if job.service_account_name:
        pod["serviceAccountName"] = job.service_account_name
    else:  # the runner never talks to the API server
        pod["automountServiceAccountToken"] = False
    for key, value in (
        ("nodeSelector", job.node_selector),
        ("tolerations", job.tolerations),
        ("affinity", job.affinity),
        ("imagePullSecrets", job.image_pull_secrets),
    ):
        _put(pod, key, copy.deepcopy(value))
    volumes: list[dict[str, Any]] = []
    if req.spec.runner.mode == "inject":
        pod["initContainers"] = [init_container(req)]
        volumes.append({"name": c.RUNNER_VOLUME_NAME, "emptyDir": {"sizeLimit": "64Mi"}})
    every = containers + pod.get("initContainers", [])
    if any(m["name"] == c.TMP_VOLUME_NAME for x in every for m in x.get("volumeMounts", [])):
        volumes.append({"name": c.TMP_VOLUME_NAME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}})
    if volumes:
        pod["volumes"] = volumes
    return pod


def labels(req: JobRequest) -> dict[str, str]:
    """User labels first; ours win, since the operator selects by them."""
    out = {
        **(req.spec.job.labels or {}),
        **selector_labels(req.owner.name),
        c.LABEL_COMPONENT: c.COMPONENT_MIGRATION,
        c.LABEL_CONTENT_HASH: req.content_hash,
        c.LABEL_ATTEMPT: str(req.attempt),
    }
    if req.plan:
        out[c.LABEL_JOB_KIND] = c.JOB_KIND_PLAN
    elif req.contract:
        out[c.LABEL_JOB_KIND] = c.JOB_KIND_CONTRACT
    return out


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_job(req: JobRequest) -> dict[str, Any]:
    """The complete Job for one attempt."""
    job = req.spec.job
    meta_labels = labels(req)
    annotations = {**(job.annotations or {}), c.ANNOTATION_IMAGE: req.spec.image}
    if req.plan_hash and not req.plan:
        annotations[c.ANNOTATION_PLAN_HASH] = req.plan_hash
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # the operator retries itself, with its own backoff
        "podFailurePolicy": copy.deepcopy(POD_FAILURE_POLICY),
        "template": {
            "metadata": {"labels": dict(meta_labels), "annotations": dict(annotations)},
            "spec": pod_spec(req),
        },
    }
    _put(spec, "activeDeadlineSeconds", job.active_deadline_seconds)
    _put(spec, "ttlSecondsAfterFinished", job.ttl_seconds_after_finished)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": req.job_name,
            "namespace": req.owner.namespace,
            "labels": meta_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(req.owner)],
        },
        "spec": spec,
    }


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value
