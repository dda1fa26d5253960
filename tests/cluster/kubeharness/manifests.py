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


def resource(api_version: str, kind: str, name: str, **body: Any) -> dict[str, Any]:
    """An object named ``name``; ``body`` holds its other top-level fields (spec, stringData)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **body}


def secret(name: str, **string_data: str) -> dict[str, Any]:
    return resource("v1", "Secret", name, stringData=string_data)


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return resource("v1", "Pod", name, spec=pod_spec(*containers, **spec))


def job(
    name: str, *containers: dict[str, Any], backoff_limit: int = 0, **spec: Any
) -> dict[str, Any]:
    template = {"spec": pod_spec(*containers, **spec)}
    return resource(
        "batch/v1", "Job", name, spec={"backoffLimit": backoff_limit, "template": template}
    )


def deployment(
    name: str,
    replicas: int,
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """Pods labelled ``labels`` (default app=<name>) and annotated ``annotations``; ``spec``
    adds pod spec fields."""
    labels = labels or {"app": name}
    template = {
        "metadata": {"labels": labels, "annotations": annotations or {}},
        "spec": pod_spec(*containers, restartPolicy="Always", **spec),
    }
    return resource(
        "apps/v1",
        "Deployment",
        name,
        spec={"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
    )
