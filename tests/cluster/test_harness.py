"""The local cluster and its real node do what the operator and the gate rely on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from kubeharness import manifests as m
from kubeharness.node import NODE_NAME
from kubeharness.wait import eventually

pytestmark = pytest.mark.own_node  # skips against an existing cluster (MIGRATEGATE_KUBECONFIG)

Kubectl = Callable[..., str]


def apply(kubectl: Kubectl, ns: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def get(kubectl: Kubectl, ns: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "-n", ns, kind, name, "-o", "json")))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return {}


def job_condition(kubectl: Kubectl, ns: str, name: str, kind: str) -> dict[str, Any]:
    c = condition(get(kubectl, ns, "job", name), kind)
    assert c.get("status") == "True", f"job {name} has no {kind} condition yet"
    return c


def pod_state(kubectl: Kubectl, ns: str, name: str, container: str) -> dict[str, Any]:
    status = get(kubectl, ns, "pod", name)["status"]
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if s["name"] == container:
            return dict(s["state"])
    return {}


def in_phase(kubectl: Kubectl, ns: str, name: str, phase: str) -> dict[str, Any]:
    """The pod's status, asserting it has reached ``phase``."""
    status = dict(get(kubectl, ns, "pod", name)["status"])
    assert status.get("phase") == phase, status
    return status


def terminated(kubectl: Kubectl, ns: str, name: str, container: str = "main") -> dict[str, Any]:
    state = pod_state(kubectl, ns, name, container)
    assert "terminated" in state, state
    return dict(state["terminated"])


def test_job_whose_pod_exits_0_gets_complete(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, m.job("ok", m.container("main", "exit 0")))
    eventually(lambda: job_condition(kubectl, namespace, "ok", "Complete"), timeout=60)
    assert get(kubectl, namespace, "job", "ok")["status"]["succeeded"] == 1


def test_pod_exiting_1_fails_the_job_after_backoff_limit(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, m.job("bad", m.container("main", "exit 1"), backoff_limit=1))
    c = eventually(lambda: job_condition(kubectl, namespace, "bad", "Failed"), timeout=90)
    assert c["reason"] == "BackoffLimitExceeded"
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "job-name=bad", "-o", "json"))
    codes = [
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
        for p in pods["items"]
    ]
    assert codes == [1, 1]  # backoffLimit 1: the first try and one retry


def test_deployment_rolls_out_and_its_pods_become_ready(kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, namespace, m.deployment("web", 2, m.container("main", "exec sleep 3600")))
    kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=60s")
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json"))
    assert len(pods["items"]) == 2
    for p in pods["items"]:
        assert p["status"]["phase"] == "Running"
        assert condition(p, "Ready")["status"] == "True"


def test_gated_pod_stays_pending_until_the_gate_is_removed(
    kubectl: Kubectl, namespace: str
) -> None:
    gated = m.pod("gated", m.container("main", "exit 0"), schedulingGates=[{"name": "test/hold"}])
    apply(kubectl, namespace, gated)
    # A pod created after it runs to the end: the scheduler has seen the gated one and left it.
    apply(kubectl, namespace, m.pod("witness", m.container("main", "exit 0")))
    eventually(lambda: terminated(kubectl, namespace, "witness"), timeout=30)
    pod = get(kubectl, namespace, "pod", "gated")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    kubectl(
        "patch",
        "pod",
        "gated",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/schedulingGates"}]',
    )
    eventually(lambda: in_phase(kubectl, namespace, "gated", "Succeeded"), timeout=30)


def test_env_from_secret_configmap_and_fieldref_reaches_the_process(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cr%t $x"
    )
    kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=MODE=fast")
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "COMBINED", "value": "$(MODE)-$(POD)"},
    ]
    script = 'printf "%s|%s|%s" "$TOKEN" "$NS" "$COMBINED" > /dev/termination-log'
    c = m.container("main", script, env=env, envFrom=[{"configMapRef": {"name": "settings"}}])
    apply(kubectl, namespace, m.pod("envy", c))
    t = eventually(lambda: terminated(kubectl, namespace, "envy"), timeout=30)
    assert (t["exitCode"], t["message"]) == (0, f"s3cr%t $x|{namespace}|fast-envy")


def test_empty_dir_is_shared_between_init_container_and_container(
    kubectl: Kubectl, namespace: str
) -> None:
    mount = [{"name": "shared", "mountPath": "/shared"}]
    init = m.container("init", "echo from-init > /shared/file", volumeMounts=mount)
    main = m.container("main", "cat /shared/file > /dev/termination-log", volumeMounts=mount)
    apply(
        kubectl,
        namespace,
        m.pod("share", main, initContainers=[init], volumes=[{"name": "shared", "emptyDir": {}}]),
    )
    t = eventually(lambda: terminated(kubectl, namespace, "share"), timeout=30)
    assert t["message"] == "from-init\n"
    assert terminated(kubectl, namespace, "share", "init")["exitCode"] == 0
    assert not os.path.exists("/shared/file")  # the mount was private to the pod


def test_missing_secret_or_key_gives_create_container_config_error(
    kubectl: Kubectl, namespace: str
) -> None:
    env = [{"name": "URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]
    apply(kubectl, namespace, m.pod("cfg", m.container("main", 'test -n "$URL"', env=env)))

    def waiting(message: str) -> None:
        state = pod_state(kubectl, namespace, "cfg", "main")
        assert state.get("waiting", {}).get("reason") == "CreateContainerConfigError", state
        assert state["waiting"]["message"] == message, state

    eventually(lambda: waiting('secret "db" not found'), timeout=30)
    kubectl("create", "secret", "generic", "db", "-n", namespace, "--from-literal=other=x")
    eventually(lambda: waiting(f"couldn't find key url in Secret {namespace}/db"), timeout=30)
    kubectl(
        "patch",
        "secret",
        "db",
        "-n",
        namespace,
        "-p",
        '{"stringData": {"url": "postgresql://h/d"}}',
    )
    t = eventually(lambda: terminated(kubectl, namespace, "cfg"), timeout=30)
    assert t["exitCode"] == 0


def test_crd_is_served_with_structural_validation_and_status(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    kubectl("wait", "--for=condition=Established", "crd/widgets.harness.test", "--timeout=30s")
    eventually(lambda: kubectl("get", "widgets", "-n", namespace), timeout=30)
    widget = {
        "apiVersion": "harness.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 3, "bogus": True},
    }
    with pytest.raises(RuntimeError, match='unknown field "spec.bogus"'):
        apply(kubectl, namespace, widget)  # strict field validation (kubectl's default)
    kubectl("apply", "-n", namespace, "--validate=false", "-f", "-", input=json.dumps(widget))
    stored = get(kubectl, namespace, "widget", "w")
    assert stored["spec"] == {"size": 3}  # without it, unknown fields are pruned
    bad = {**widget, "metadata": {"name": "bad"}, "spec": {"size": 0}}
    with pytest.raises(RuntimeError, match="spec.size"):
        apply(kubectl, namespace, bad)
    kubectl(
        "patch",
        "widget",
        "w",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}, "spec": {"size": 9}}',
    )
    stored = get(kubectl, namespace, "widget", "w")
    # the status subresource writes status only, and does not bump the generation
    assert (stored["status"], stored["spec"], stored["metadata"]["generation"]) == (
        {"phase": "Ready"},
        {"size": 3},
        1,
    )


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.harness.test"},
    "spec": {
        "group": "harness.test",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_node_is_registered_ready(kubectl: Kubectl, namespace: str) -> None:
    node = json.loads(kubectl("get", "node", NODE_NAME, "-o", "json"))
    assert condition(node, "Ready")["status"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
