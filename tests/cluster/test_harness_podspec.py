"""Pure pod logic of the pod runner (no cluster needed)."""

from __future__ import annotations

import base64

import pytest
from kubeharness import podspec as ps
from kubeharness.images import Image


def pod(**spec: object) -> ps.Pod:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


def test_env_precedence_expansion_and_refs() -> None:
    c = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}}},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "X", "value": "$(ME)/$(CM_k)/$(UNKNOWN)/$$(ME)"},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}},
            },
        ],
    }
    env = ps.container_env(
        pod(),
        c,
        Image(env={"PATH": "/img"}),
        {"s": {"url": b"pg://"}},
        {"cm": {"k": b"v", "bad-key": b"x"}},
    )
    assert env["PATH"] == "/img" and env["URL"] == "pg://" and env["APP"] == "a"
    assert env["X"] == "p/v/$(UNKNOWN)/$(ME)"
    assert "OPT" not in env and "CM_bad-key" in env  # dashes are valid in env names


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({}, 'secret "s" not found'),
        ({"s": {"other": b""}}, "couldn't find key url in Secret ns/s"),
    ],
)
def test_missing_secret_messages_match_kubelet(secrets: ps.Objects, message: str) -> None:
    c = {
        "name": "c",
        "env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}}}],
    }
    with pytest.raises(ps.ContainerConfigError, match=f"^{message}$"):
        ps.container_env(pod(), c, Image(), secrets, {})


def test_missing_configmap_message() -> None:
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}
    with pytest.raises(ps.ContainerConfigError, match='^configmap "cm" not found$'):
        ps.container_env(pod(), c, Image(), {}, {})


def test_schedulable_respects_gates_node_selector_and_binding() -> None:
    labels = {"kubernetes.io/os": "linux"}
    assert ps.schedulable(pod(), labels)
    assert not ps.schedulable(pod(schedulingGates=[{"name": "g"}]), labels)
    assert not ps.schedulable(pod(nodeSelector={"disk": "ssd"}), labels)
    assert ps.schedulable(pod(nodeSelector={"kubernetes.io/os": "linux"}), labels)
    assert not ps.schedulable(pod(nodeName="n"), labels)


def test_pod_phase_rules() -> None:
    ok = ps.terminated(0, "t", "t")
    bad = ps.terminated(1, "t", "t")
    assert ps.pod_phase("Never", [ok, ok]) == "Succeeded"
    assert ps.pod_phase("Never", [ok, bad]) == "Failed"
    assert ps.pod_phase("OnFailure", [bad]) == "Running"  # it will restart
    assert ps.pod_phase("Never", [ps.running("t"), bad]) == "Running"
    assert ps.pod_phase("Never", [ps.waiting("CreateContainerConfigError")]) == "Pending"
    assert ps.pod_phase("Always", [ps.waiting("CrashLoopBackOff")]) == "Running"


def test_termination_message_file_or_log_tail() -> None:
    fallback = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    log = "\n".join(f"line {i}" for i in range(100))
    assert ps.termination_message(fallback, "from file", log, 1) == "from file"
    assert ps.termination_message(fallback, "", log, 1).splitlines()[0] == "line 20"  # last 80
    assert ps.termination_message(fallback, "", log, 0) == ""
    assert ps.termination_message({}, "", log, 1) == ""
    assert len(ps.termination_message({}, "x" * 5000, "", 0)) == 4096


def test_run_as_user_and_non_root() -> None:
    c = {"name": "c", "securityContext": {"runAsUser": 7}}
    assert ps.run_as(pod(securityContext={"runAsUser": 5, "runAsGroup": 6}), c, Image()) == (7, 6)
    assert ps.run_as(pod(), {"name": "c"}, Image(user=65534)) == (65534, 65534)
    with pytest.raises(ps.ContainerConfigError, match="runAsNonRoot"):
        ps.run_as(pod(securityContext={"runAsNonRoot": True}), {"name": "c"}, Image())


def test_secret_volume_items_and_modes() -> None:
    vol = {
        "name": "v",
        "secret": {"secretName": "s", "items": [{"key": "a", "path": "x/a", "mode": 0o400}]},
    }
    files = ps.volume_files(vol, pod(), {"s": {"a": b"1", "b": b"2"}}, {})
    assert files == {"x/a": (b"1", 0o400)}
    with pytest.raises(ps.MountError, match='volume "v" : secret "s" not found'):
        ps.volume_files(vol, pod(), {}, {})


def test_decode_secret_and_configmap() -> None:
    secret = {"data": {"k": base64.b64encode(b"\x00v").decode()}}
    assert ps.decode(secret, "secret") == {"k": b"\x00v"}
    assert ps.decode({"data": {"k": "v"}}, "configMap") == {"k": b"v"}


def test_mounts_are_ordered_parents_first_and_include_the_termination_file() -> None:
    c = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/app/data", "subPath": "d"}]}
    ms = ps.mounts(c, Image(mounts={"/app": "/host/app"}), {"v": "/vol"}, "/term")
    assert [(x.host, x.path) for x in ms] == [
        ("/host/app", "/app"),
        ("/vol/d", "/app/data"),
        ("/term", "/dev/termination-log"),
    ]
