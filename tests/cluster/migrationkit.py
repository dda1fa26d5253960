"""Pieces every migration test on the local cluster needs: the repository's paths, a
kubeconfig for a ServiceAccount's token, and the operator installed by its chart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from kubeharness.controlplane import ControlPlane

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def token_kubeconfig(server: str, ca_file: Path, token: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a ServiceAccount token and nothing else."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    return path


OPERATOR_CHART = REPO / "charts" / "migrategate"
CRD = REPO / "crds" / "databasemigrations.migrategate.io.yaml"


def helm(cp: ControlPlane, *args: str, check: bool = True) -> str:
    """The built helm against this cluster; its stdout."""
    done = subprocess.run(["helm", *args], env=cp.env, capture_output=True, text=True, timeout=180)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])}: {done.stderr.strip()}")
    return done.stdout


def install_operator(cp: ControlPlane, namespace: str, image: str, *values: str) -> None:
    """`helm install rel` of the operator chart with ``image``; waits for its pods.

    The CRD is applied from crds/ beforehand and the chart's copy left out
    (crds.create=false), as when CRDs are managed apart: the chart keeps its CRD on
    uninstall, so a second release elsewhere could not adopt it.
    """
    cp.kubectl("apply", "-f", str(CRD))
    repository, tag = image.rsplit(":", 1)
    sets = [f"image.repository={repository}", f"image.tag={tag}", "crds.create=false", *values]
    args = [arg for value in sets for arg in ("--set", value)]
    chart = str(OPERATOR_CHART)
    helm(cp, "install", "rel", chart, "-n", namespace, "--wait", "--timeout=120s", *args)


def operator_pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The chart's operator pods that are not being deleted."""
    selector = "app.kubernetes.io/name=migrategate"
    out = cp.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]
