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
    assert "initContainers" not in pod(job) and "volumes" not in pod(job)
    assert pod(job)["containers"][0]["command"][:2] == ["migrategate", "migrate"]


def test_args_parse_with_a_parser_built_from_the_contract():
    """The flags the Job passes are exactly ones the contract's options table declares."""
    spec = DatabaseMigrationSpec.model_validate(
        {
            **BASE,
            "alembic": {"target": "b2", "section": "db2", "xArgs": ["a=1", "b=x=y"]},
            "runner": {"driver": "asyncpg", "lockTimeoutSeconds": 7, "ifAhead": "fail"},
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
    assert ns.result_file == "/dev/termination-log"
    assert ns.database_url_env == "DATABASE_URL"
    assert ns.x == ["a=1", "b=x=y"]


def test_default_args_are_plain_values_the_cli_accepts():
    args = runner_args(DatabaseMigrationSpec.model_validate(BASE))
    pairs = dict(zip(args[1::2], args[2::2], strict=True))
    assert pairs["--driver"] == "auto" and pairs["--if-ahead"] == "succeed"
    assert pairs["--target"] == "head" and pairs["--lock-timeout"] == "300"
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
