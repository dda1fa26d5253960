"""Pieces every migration test on the local cluster needs: the repository's paths, a
kubeconfig for a ServiceAccount's token, an operator identity with deploy/rbac.yaml's
rights, and the operator installed by its chart."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import operatorproc
import yaml
from kubeharness import manifests
from kubeharness.controlplane import ControlPlane
from kubeharness.wait import eventually
from migrategate.api import constants as c

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


@contextlib.contextmanager
def operator_identity(
    cp: ControlPlane,
    namespace: str,
    path: Path,
    without: tuple[str, str] | None = None,
    token_args: tuple[str, ...] = (),
) -> Iterator[Path]:
    """A ServiceAccount ``<namespace>-operator`` bound to a copy of deploy/rbac.yaml's
    ClusterRole under that name (so other modules' copies are untouched); yields a
    kubeconfig at ``path`` with its token (``kubectl create token`` plus ``token_args``),
    and deletes all three afterwards.

    ``without=(resource, verb)`` leaves ``verb`` out of the rules that name ``resource``.
    """
    docs = yaml.safe_load_all((REPO / "deploy/rbac.yaml").read_text())
    (role,) = [
        d
        for d in docs
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "migrategate-operator"
    ]
    if without is not None:
        resource, verb = without
        rules = []
        for rule in role["rules"]:
            if resource in rule["resources"]:
                rule = {**rule, "verbs": [v for v in rule["verbs"] if v != verb]}
            rules.append(rule)
        role = {**role, "rules": rules}
    name = f"{namespace}-operator"
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
        {**role, "metadata": {"name": name}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    cp.kubectl("apply", "-f", "-", input=manifest)
    try:
        token = cp.kubectl("create", "token", name, "-n", namespace, *token_args).strip()
        yield token_kubeconfig(cp.server, cp.ca_file, token, path)
    finally:
        cp.kubectl("delete", "-f", "-", "--wait=false", input=manifest, check=False)


OPERATOR_CHART = REPO / "charts" / "migrategate"
CRD = REPO / "crds" / "databasemigrations.migrategate.io.yaml"


@contextlib.contextmanager
def restricted_namespace(cp: ControlPlane, name: str) -> Iterator[str]:
    """A namespace under the restricted Pod Security profile, yielded once its default
    ServiceAccount and CA ConfigMap exist (pods are refused or fail before that); deleted
    without waiting."""
    cp.kubectl("create", "namespace", name)
    cp.kubectl("label", "namespace", name, manifests.RESTRICTED_LABEL)

    def ready() -> None:
        out = cp.kubectl("get", "serviceaccount,configmap", "-n", name, "-o", "name")
        assert "serviceaccount/default" in out and "configmap/kube-root-ca.crt" in out, out

    eventually(ready, timeout=30)
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply_crd(cp: ControlPlane) -> None:
    """The CRD from crds/, once the API server serves it."""
    cp.kubectl("apply", "-f", str(CRD))

    def served() -> None:
        out = cp.kubectl("api-resources", "--api-group", c.GROUP, "-o", "name", check=False)
        assert f"{c.PLURAL}.{c.GROUP}" in out, out

    eventually(served, timeout=30)


@contextlib.contextmanager
def operator_with_shipped_rights(
    cp: ControlPlane, namespace: str, runner_image: str, workdir: Path
) -> Iterator[operatorproc.Operator]:
    """The CRD, then the operator as a process in ``namespace`` with exactly deploy/rbac.yaml's
    rights (operator_identity); its kubeconfig and log are in ``workdir``. Afterwards its log
    must hold no "forbidden": every call it made was allowed."""
    apply_crd(cp)
    path = workdir / "operator.kubeconfig"
    with operator_identity(cp, namespace, path, token_args=("--duration=2h",)) as kubeconfig:
        env = {**cp.env, "KUBECONFIG": str(kubeconfig)}
        log = workdir / "operator.log"
        with operatorproc.running(env, namespace, log, runner_image=runner_image) as op:
            yield op
            assert "forbidden" not in op.log().lower()


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
