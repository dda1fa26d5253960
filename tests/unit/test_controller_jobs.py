"""The Job builder."""

import argparse

from migrategate.api import constants as c
from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller.jobs import JobRequest, Owner, build_job, runner_args
from migrategate.runner import contract

BASE = {"image": "app:1", "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}}}


def build(change=None, attempt=1):
    spec = DatabaseMigrationSpec.model_validate({**BASE, **(change or {})})
    req = JobRequest(
        owner=Owner("shop", "ns1", "uid-1"),
        spec=spec,
        job_name="shop-abc",
        content_hash="abc",
        attempt=attempt,
        runner_image="migrategate:test",
    )
    return build_job(req)


def pod(job):
    return job["spec"]["template"]["spec"]


def test_inject_mode_copies_the_runner_and_runs_it_with_the_apps_python():
    job = build({"alembic": {"workingDir": "/srv/app"}})
    init = pod(job)["initContainers"][0]
    main = pod(job)["containers"][0]
    assert init["image"] == "migrategate:test"
    assert init["command"] == list(contract.INSTALL_COMMAND)
    assert init["volumeMounts"][0]["mountPath"] == contract.INJECTED_PAYLOAD_DIR
    assert main["image"] == "app:1"
    assert main["command"][:3] == ["python", contract.INJECTED_ENTRYPOINT, "migrate"]
    assert main["workingDir"] == "/srv/app"
    assert main["volumeMounts"][0]["readOnly"] is True
    assert pod(job)["volumes"][0]["emptyDir"]


def test_installed_mode_runs_the_installed_cli_without_init_container():
    job = build({"runner": {"mode": "installed"}})
    assert "initContainers" not in pod(job)
    assert [v["name"] for v in pod(job)["volumes"]] == [c.TMP_VOLUME_NAME]  # /tmp only
    assert pod(job)["containers"][0]["command"][:2] == ["migrategate", "migrate"]


def test_args_parse_with_a_parser_built_from_the_contract():
    """The flags the Job passes are exactly ones the contract's options table declares."""
    spec = DatabaseMigrationSpec.model_validate(
        {
            **BASE,
            "alembic": {"target": "b2", "section": "db2", "xArgs": ["a=1", "b=x=y"]},
            "runner": {
                "driver": "asyncpg",
                "lockTimeoutSeconds": 7,
                "ifAhead": "fail",
                "lockTimeout": "500ms",
                "statementTimeout": "2m",
                "lockRetries": 3,
            },
        }
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=contract.COMMANDS)
    for opt in contract.OPTIONS:
        parser.add_argument(opt.flag, dest=opt.name, default=opt.default, choices=opt.choices)
    parser.add_argument(contract.X_ARG_FLAG, action="append", dest="x", default=[])
    ns = parser.parse_args(runner_args(spec))
    assert ns.command == "migrate"
    assert (ns.target, ns.section, ns.driver) == ("b2", "db2", "asyncpg")
    assert ns.lock_timeout == "7" and ns.if_ahead == "fail"
    assert (ns.pg_lock_timeout, ns.statement_timeout, ns.lock_retries) == ("0.5", "120", "3")
    assert ns.result_file == "/dev/termination-log"
    assert ns.database_url_env == "DATABASE_URL"
    assert ns.x == ["a=1", "b=x=y"]


def test_default_args_are_plain_values_the_cli_accepts():
    args = runner_args(DatabaseMigrationSpec.model_validate(BASE))
    pairs = dict(zip(args[1::2], args[2::2], strict=True))
    assert pairs["--driver"] == "auto" and pairs["--if-ahead"] == "succeed"
    assert pairs["--target"] == "head" and pairs["--lock-timeout"] == "300"
    assert pairs["--pg-lock-timeout"] == "5" and pairs["--statement-timeout"] == "0"
    assert pairs["--lock-retries"] == "5"
    for opt in contract.OPTIONS:
        if opt.choices and opt.flag in pairs:
            assert pairs[opt.flag] in opt.choices


def test_database_url_comes_from_the_secret_and_result_from_termination_log():
    main = pod(build())["containers"][0]
    env = {e["name"]: e for e in main["env"]}
    assert env["DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert main["terminationMessagePath"] == "/dev/termination-log"
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_user_env_wins_over_ours_and_is_kept():
    job = build({"job": {"env": [{"name": "PYTHONUNBUFFERED", "value": "0"}, {"name": "X"}]}})
    env = pod(job)["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert names.count("PYTHONUNBUFFERED") == 1
    assert {"name": "PYTHONUNBUFFERED", "value": "0"} in env and {"name": "X"} in env


def test_restricted_security_defaults_merge_with_user_settings():
    job = build(
        {
            "job": {
                "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_RAW"]}},
                "podSecurityContext": {"fsGroup": 2000},
            }
        }
    )
    sc = pod(job)["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert sc["runAsUser"] == 1000
    psc = pod(job)["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["fsGroup"] == 2000


def test_job_is_owned_labelled_and_not_retried_by_kubernetes():
    job = build({"job": {"labels": {"team": "a", c.LABEL_MIGRATION: "spoof"}}}, attempt=2)
    meta = job["metadata"]
    assert job["spec"]["backoffLimit"] == 0
    assert pod(job)["restartPolicy"] == "Never"
    ref = meta["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "DatabaseMigration",
        "shop",
        "uid-1",
        True,
    )
    for labels in (meta["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels[c.LABEL_MIGRATION] == "shop"
        assert labels[c.LABEL_CONTENT_HASH] == "abc"
        assert labels[c.LABEL_ATTEMPT] == "2"
        assert labels["team"] == "a"
    assert meta["annotations"][c.ANNOTATION_IMAGE] == "app:1"


def test_the_job_says_why_a_disrupted_pod_failed():
    # The pod of a deleted or evicted attempt is gone when its Job fails; these rules keep the
    # cause (a DisruptionTarget condition, exit 143 or 137 of the migration container) in the
    # Job's Failed condition. Every other failure is left to backoffLimit 0, as before.
    policy = build({})["spec"]["podFailurePolicy"]
    assert [r["action"] for r in policy["rules"]] == ["FailJob", "FailJob"]
    assert policy["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    codes = policy["rules"][1]["onExitCodes"]
    # (the API server refuses values out of ascending order)
    assert codes == {"containerName": c.CONTAINER_NAME, "operator": "In", "values": [137, 143]}
    runner_verdicts = {code.value for code in contract.ExitCode} - {0, 143}
    assert not runner_verdicts & set(codes["values"])


def test_pod_settings_pass_through():
    tol = [{"key": "k", "operator": "Exists"}]
    job = build(
        {
            "imagePullPolicy": "Never",
            "job": {
                "serviceAccountName": "migrator",
                "nodeSelector": {"pool": "db"},
                "tolerations": tol,
                "imagePullSecrets": [{"name": "reg"}],
                "resources": {"limits": {"memory": "256Mi"}},
                "envFrom": [{"configMapRef": {"name": "cfg"}}],
                "activeDeadlineSeconds": 600,
                "ttlSecondsAfterFinished": 3600,
            },
        }
    )
    spec = pod(job)
    assert spec["serviceAccountName"] == "migrator"
    assert "automountServiceAccountToken" not in spec
    assert spec["nodeSelector"] == {"pool": "db"} and spec["tolerations"] == tol
    assert spec["imagePullSecrets"] == [{"name": "reg"}]
    main = spec["containers"][0]
    assert main["imagePullPolicy"] == "Never"
    assert main["resources"] == {"limits": {"memory": "256Mi"}}
    assert main["envFrom"] == [{"configMapRef": {"name": "cfg"}}]
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_no_service_account_means_no_token():
    assert pod(build())["automountServiceAccountToken"] is False


# ----------------------------------------------------------------------------- pod security

RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(spec):
    """What the restricted Pod Security profile (as of v1.25+) would refuse in this pod."""
    out = []
    psc = spec.get("securityContext") or {}
    for cont in spec["containers"] + spec.get("initContainers", []):
        sc = cont.get("securityContext") or {}
        name = cont["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            out.append(f"{name}: capabilities.drop")
        if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities.add")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
    for vol in spec.get("volumes", []):
        if not set(vol) - {"name"} <= RESTRICTED_VOLUME_TYPES:
            out.append(f"volume {vol['name']}")
    return out


def kubelet_refusal(spec, container, image_user):
    """The kubelet's runAsNonRoot check (verifyRunAsNonRoot) for an image's USER, or None.

    `image_user` is the image config's User: "" (root), "0", "app", "10001".
    """
    sc = container.get("securityContext") or {}
    psc = spec.get("securityContext") or {}
    if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        return None
    uid = sc.get("runAsUser", psc.get("runAsUser"))
    if uid is not None:
        return "container's runAsUser breaks non-root policy" if uid == 0 else None
    user = image_user.split(":")[0]
    if not user.isdigit() and user != "":
        return f"container has runAsNonRoot and image has non-numeric user ({user})"
    if user in ("", "0"):
        return "container has runAsNonRoot and image will run as root"
    return None


def test_default_job_pod_is_restricted():
    for change in ({}, {"runner": {"mode": "installed"}}):
        assert restricted_violations(pod(build(change))) == []


def test_images_running_as_root_or_a_named_user_start_under_the_default_user():
    spec = pod(build())
    for image_user in ("", "0", "root", "app", "app:app", "10001"):
        for cont in spec["containers"] + spec["initContainers"]:
            assert kubelet_refusal(spec, cont, image_user) is None, (image_user, cont["name"])
    psc = spec["securityContext"]
    assert (psc["runAsUser"], psc["runAsGroup"], psc["runAsNonRoot"]) == (65532, 65532, True)


def test_the_users_own_user_and_group_win():
    spec = pod(build({"job": {"podSecurityContext": {"runAsUser": 10001}}}))
    assert spec["securityContext"]["runAsUser"] == 10001
    assert "runAsGroup" not in spec["securityContext"]  # the image's group for that user
    spec = pod(build({"job": {"podSecurityContext": {"runAsGroup": 3000}}}))
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (
        65532,
        3000,
    )
    # A container-level user overrides the pod's anyway: no pod-level default beside it.
    spec = pod(build({"job": {"securityContext": {"runAsUser": 2000, "runAsGroup": 2000}}}))
    assert "runAsUser" not in spec["securityContext"]
    assert "runAsGroup" not in spec["securityContext"]
    assert spec["containers"][0]["securityContext"]["runAsUser"] == 2000
    assert restricted_violations(spec) == []


def test_operator_job_defaults_count_as_the_users_choice():
    from migrategate.api.models import JobSpec
    from migrategate.controller.jobs import with_job_defaults

    spec = DatabaseMigrationSpec.model_validate(BASE)
    defaults = JobSpec.model_validate({"podSecurityContext": {"runAsUser": 1500}})
    req = JobRequest(
        owner=Owner("shop", "ns1", "uid-1"),
        spec=with_job_defaults(spec, defaults),
        job_name="shop-abc",
        content_hash="abc",
        attempt=1,
        runner_image="migrategate:test",
    )
    assert pod(build_job(req))["securityContext"]["runAsUser"] == 1500


def test_read_only_root_gets_a_small_writable_tmp_and_home():
    spec = pod(build())
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[c.TMP_VOLUME_NAME] == {
        "name": c.TMP_VOLUME_NAME,
        "emptyDir": {"sizeLimit": "64Mi"},
    }
    for cont in spec["containers"] + spec["initContainers"]:
        assert cont["securityContext"]["readOnlyRootFilesystem"] is True
        tmp = [m for m in cont["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp == [{"name": c.TMP_VOLUME_NAME, "mountPath": "/tmp"}], cont["name"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_a_writable_root_needs_no_tmp_volume():
    spec = pod(build({"job": {"securityContext": {"readOnlyRootFilesystem": False}}}))
    assert [v["name"] for v in spec["volumes"]] == [c.RUNNER_VOLUME_NAME]
    for cont in spec["containers"] + spec["initContainers"]:
        assert all(m["mountPath"] != "/tmp" for m in cont["volumeMounts"])


def test_the_users_home_and_bytecode_settings_win():
    own = [{"name": "HOME", "value": "/app"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": ""}]
    env = pod(build({"job": {"env": own}}))["containers"][0]["env"]
    assert [e for e in env if e["name"] in ("HOME", "PYTHONDONTWRITEBYTECODE")] == own
