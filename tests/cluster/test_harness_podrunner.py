"""The pod runner's kubelet behaviours beyond the basics in test_harness.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kubeharness import manifests as m
from kubeharness.images import DEFAULT_PATH, Image, ImageTable
from kubeharness.podrunner import PodRunner
from kubeharness.wait import eventually
from test_harness import Kubectl, apply, condition, get, in_phase, pod_state, terminated


def test_unknown_image_fails_like_an_unpullable_image(
    kubectl: Kubectl, namespace: str, images: ImageTable
) -> None:
    apply(kubectl, namespace, m.pod("nopull", m.container("main", "exit 0", image="nowhere:1")))

    def backing_off() -> None:
        state = pod_state(kubectl, namespace, "nopull", "main")
        assert state.get("waiting", {}).get("reason") == "ImagePullBackOff", state

    eventually(backing_off, timeout=30)
    assert get(kubectl, namespace, "pod", "nopull")["status"]["phase"] == "Pending"
    images["nowhere:1"] = Image(env={"PATH": DEFAULT_PATH})  # "pushed": the retry pulls it
    eventually(lambda: in_phase(kubectl, namespace, "nopull", "Succeeded"), timeout=30)


def test_image_table_mounts_env_and_working_dir(
    kubectl: Kubectl, namespace: str, images: ImageTable, tmp_path: Path
) -> None:
    (tmp_path / "alembic.ini").write_text("[alembic]\n")
    images["myapp:1"] = Image(
        env={"PATH": DEFAULT_PATH, "APP_FLAVOUR": "test"},
        mounts={"/app": str(tmp_path)},
        working_dir="/app",
    )
    script = 'printf "%s %s %s" "$(pwd)" "$(ls)" "$APP_FLAVOUR" > /dev/termination-log'
    apply(kubectl, namespace, m.pod("img", m.container("main", script, image="myapp:1")))
    t = eventually(lambda: terminated(kubectl, namespace, "img"), timeout=30)
    assert t["message"] == "/app alembic.ini test"


def test_python_of_the_venv_runs_in_a_container(kubectl: Kubectl, namespace: str) -> None:
    script = 'python -c "import sys, sqlalchemy; print(sys.prefix)" > /dev/termination-log'
    apply(kubectl, namespace, m.pod("py", m.container("main", script, image="python:3.11")))
    t = eventually(lambda: terminated(kubectl, namespace, "py"), timeout=30)
    assert (t["exitCode"], t["message"].strip()) == (0, str(Path(sys.executable).parent.parent))


def test_termination_log_is_per_container_and_falls_back_to_logs(
    kubectl: Kubectl, namespace: str
) -> None:
    a = m.container("a", "echo A > /dev/termination-log")
    b = m.container("b", "echo log line; exit 3", terminationMessagePolicy="FallbackToLogsOnError")
    c = m.container("c", "echo R > /tmp/result-c", terminationMessagePath="/tmp/result-c")
    apply(kubectl, namespace, m.pod("msgs", a, b, c))
    eventually(lambda: in_phase(kubectl, namespace, "msgs", "Failed"), timeout=30)
    assert terminated(kubectl, namespace, "msgs", "a")["message"] == "A\n"
    tb = terminated(kubectl, namespace, "msgs", "b")
    assert (tb["exitCode"], tb["reason"], tb["message"]) == (3, "Error", "log line")
    assert terminated(kubectl, namespace, "msgs", "c")["message"] == "R\n"


def test_secret_and_configmap_volumes_are_mounted(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "secret", "generic", "files", "-n", namespace, "--from-literal=a.txt=alpha")
    kubectl("create", "configmap", "conf", "-n", namespace, "--from-literal=b.txt=beta")
    volumes = [
        {"name": "s", "secret": {"secretName": "files"}},
        {"name": "c", "configMap": {"name": "conf", "items": [{"key": "b.txt", "path": "sub/b"}]}},
    ]
    mounts = [
        {"name": "s", "mountPath": "/etc/s", "readOnly": True},
        {"name": "c", "mountPath": "/etc/c"},
    ]
    script = (
        'printf "%s %s" "$(cat /etc/s/a.txt)" "$(cat /etc/c/sub/b)" > /dev/termination-log; '
        "touch /etc/s/x && exit 9 || exit 0"  # the secret volume is read-only
    )
    apply(
        kubectl,
        namespace,
        m.pod("vols", m.container("main", script, volumeMounts=mounts), volumes=volumes),
    )
    t = eventually(lambda: terminated(kubectl, namespace, "vols"), timeout=30)
    assert (t["exitCode"], t["message"]) == (0, "alpha beta")  # and the secret was read-only


def test_service_account_token_is_projected(kubectl: Kubectl, namespace: str) -> None:
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = f"test -s {sa}/token && cat {sa}/namespace > /dev/termination-log"
    apply(kubectl, namespace, m.pod("sa", m.container("main", script)))
    t = eventually(lambda: terminated(kubectl, namespace, "sa"), timeout=30)
    assert (t["exitCode"], t["message"]) == (0, namespace)


def test_run_as_user_from_security_context(kubectl: Kubectl, namespace: str) -> None:
    # the venv's python lives under /root (0700); a non-root container can still run it
    script = 'python -c "import os, sqlalchemy; print(os.getuid())" > /dev/termination-log'
    sc = {"runAsUser": 1234, "runAsNonRoot": True}
    apply(kubectl, namespace, m.pod("uid", m.container("main", script), securityContext=sc))
    t = eventually(lambda: terminated(kubectl, namespace, "uid"), timeout=30)
    assert t["message"] == "1234\n"
    apply(
        kubectl,
        namespace,
        m.pod("root", m.container("main", "true"), securityContext={"runAsNonRoot": True}),
    )

    def refused() -> None:
        w = pod_state(kubectl, namespace, "root", "main").get("waiting", {})
        assert w.get("reason") == "CreateContainerConfigError", w
        assert "runAsNonRoot" in w["message"]

    eventually(refused, timeout=30)


def test_on_failure_restarts_the_container(
    kubectl: Kubectl, namespace: str, pod_runner: PodRunner
) -> None:
    mount = [{"name": "d", "mountPath": "/d"}]
    # fails the first time, succeeds the second
    script = "echo run; if [ -e /d/once ]; then exit 0; fi; touch /d/once; exit 4"
    pod = m.pod(
        "flaky",
        m.container("main", script, volumeMounts=mount),
        restartPolicy="OnFailure",
        volumes=[{"name": "d", "emptyDir": {}}],
    )
    apply(kubectl, namespace, pod)

    status = eventually(lambda: in_phase(kubectl, namespace, "flaky", "Succeeded"), timeout=30)
    status = status["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 4
    assert pod_runner.log(namespace, "flaky", "main") == "run\nrun\n"  # both runs


def test_active_deadline_kills_the_pod(kubectl: Kubectl, namespace: str) -> None:
    apply(
        kubectl,
        namespace,
        m.pod("slow", m.container("main", "exec sleep 600"), activeDeadlineSeconds=2),
    )

    status = eventually(lambda: in_phase(kubectl, namespace, "slow", "Failed"), timeout=30)
    assert status.get("reason") == "DeadlineExceeded"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] in (137, 143)


def test_deletion_kills_the_processes(
    kubectl: Kubectl, namespace: str, pod_runner: PodRunner
) -> None:
    apply(kubectl, namespace, m.pod("doomed", m.container("main", "exec sleep 600")))
    eventually(lambda: _running_pid(kubectl, namespace, "doomed"), timeout=30)
    pid = _running_pid(kubectl, namespace, "doomed")
    assert Path(f"/proc/{pid}").exists()
    kubectl("delete", "pod", "doomed", "-n", namespace, "--timeout=30s")
    assert not _alive(pid)
    assert json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"] == []


def _running_pid(kubectl: Kubectl, ns: str, name: str) -> int:
    status = get(kubectl, ns, "pod", name)["status"]
    assert condition({"status": status}, "Ready").get("status") == "True", status
    return int(status["containerStatuses"][0]["containerID"].removeprefix("local://"))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
