"""Small builders of pod/Job/Deployment manifests for the harness tests.

Every pod passes the restricted Pod Security profile that test namespaces
enforce, and its images are the ones imported into the node (never pulled).
"""

from __future__ import annotations

from typing import Any

# Test namespaces carry it: the API server refuses any pod outside the restricted profile.
RESTRICTED_LABEL = "pod-security.kubernetes.io/enforce=restricted"
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def container(name: str, script: str, image: str = "busybox", **extra: Any) -> dict[str, Any]:
    """A container running ``sh -c script``."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "securityContext": RESTRICTED_CONTAINER,
        **extra,
    }


def pod_spec(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "securityContext": RESTRICTED_POD,
        "containers": list(containers),
        **spec,
    }


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": pod_spec(*containers, **spec),
    }


def job(
    name: str, *containers: dict[str, Any], backoff_limit: int = 0, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": pod_spec(*containers, **spec)},
        },
    }


def deployment(name: str, replicas: int, *containers: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec(*containers, restartPolicy="Always"),
            },
        },
    }
