"""Small builders of pod/Job/Deployment manifests for the harness tests."""

from __future__ import annotations

from typing import Any


def container(name: str, script: str, image: str = "busybox", **extra: Any) -> dict[str, Any]:
    """A container running ``sh -c script``."""
    return {"name": name, "image": image, "command": ["sh", "-c", script], **extra}


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": list(containers), **spec},
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
            "template": {
                "spec": {"restartPolicy": "Never", "containers": list(containers), **spec}
            },
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
            "template": {"metadata": {"labels": labels}, "spec": {"containers": list(containers)}},
        },
    }
