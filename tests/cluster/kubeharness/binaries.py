"""Where ``tests/cluster/build.sh`` puts the cluster's binaries."""

from __future__ import annotations

import os
from pathlib import Path

CLUSTER_DIR = Path(__file__).resolve().parent.parent
NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "pause",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "helm",
)


def versions() -> dict[str, str]:
    """The pins in versions.env (KEY=VALUE lines), the same file build.sh sources."""
    pins: dict[str, str] = {}
    for line in (CLUSTER_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pins[key] = value
    return pins


def bin_dir() -> Path:
    pins = versions()
    key = (
        f"k8s-{pins['KUBERNETES_VERSION']}_etcd-{pins['ETCD_VERSION']}_helm-{pins['HELM_VERSION']}"
        f"_containerd-{pins['CONTAINERD_VERSION']}"
    )
    cache = Path(os.environ.get("MIGRATEGATE_CACHE", Path.home() / ".cache" / "migrategate"))
    return cache / "bin" / key


def missing() -> list[str]:
    """Names of binaries not built yet (empty when the control plane can start)."""
    d = bin_dir()
    return [n for n in NAMES if not os.access(d / n, os.X_OK)]
