"""Fixtures for tests against the local cluster; see tests/cluster/README.md.

Session scope: ``control_plane`` (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and a real node: containerd + runc, kubelet, kube-proxy),
``node_images`` (real images, built and imported once), ``pg`` (PostgreSQL on the
pod bridge's gateway). Test scope: ``namespace``, ``kubectl``; for the operator's tests
``crd``, ``runner_image``, ``app_image``, ``operator`` (a process scoped to the test's
namespace) and ``cluster`` (operatorkit.Cluster). Module scope: ``module_namespace`` and
``shipped_operator`` (one operator there with deploy/rbac.yaml's rights).
Every test that uses the control plane is marked ``cluster``.

With ``MIGRATEGATE_KUBECONFIG`` set, ``control_plane``, ``node_images`` and ``pg`` are
an existing cluster, its images and its PostgreSQL instead (kubeharness/external.py),
and tests marked ``own_node`` skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import migrationkit
import operatorproc
import pgserver
import pytest
from kubeharness import binaries, controlplane, external
from kubeharness.controlplane import ControlPlane
from kubeharness.images import NodeImages
from operatorkit import Cluster

HERE = Path(__file__).parent
SKIP_PREFIX = "control-plane binaries unavailable"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the control plane (directly or through another fixture) are ``cluster``."""
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
        if item.get_closest_marker("own_node") and external.kubeconfig_path():
            item.add_marker(pytest.mark.skip(reason=external.OWN_NODE_REASON))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """A failed cluster test's report carries what the cluster saw: pods, events, pod
    logs and the end of PostgreSQL's log (a status alone rarely says why)."""
    report = yield
    args = getattr(item, "funcargs", {})
    if report.when == "call" and report.failed and "namespace" in args:
        for title, text in diagnostics(args["control_plane"], args["namespace"], args.get("pg")):
            report.sections.append((title, text))
    return report


def diagnostics(
    cp: ControlPlane, namespace: str, pg: pgserver.PgServer | None
) -> list[tuple[str, str]]:
    """(title, text) pairs describing ``namespace``'s pods and the database server."""

    def kubectl(*args: str) -> str:
        return cp.kubectl(*args, "-n", namespace, check=False)

    found = [("pods", kubectl("get", "pods", "-o", "wide"))]
    found.append(("events", kubectl("get", "events", "--sort-by=.lastTimestamp")))
    for pod in kubectl("get", "pods", "-o", "name").split():
        logs = kubectl("logs", pod, "--all-containers", "--prefix", "--tail=40")
        found.append((f"logs of {pod}", logs))
    net = getattr(cp, "net", None)
    if net is not None:  # two ports answering for one pod address would show here
        for what in (["neigh", "show", "dev"], ["-br", "link", "show", "master"]):
            shown = subprocess.run(["ip", *what, net.bridge], capture_output=True, text=True)
            found.append((f"ip {' '.join(what)} {net.bridge}", shown.stdout + shown.stderr))
    if pg is not None:
        found.append(("PostgreSQL log", pg.log_tail()))
    return found


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A running control plane; its kubeconfig and ``env`` serve kubectl, helm and clients."""
    kubeconfig = external.kubeconfig_path()
    if kubeconfig is not None:  # an existing cluster: kubeharness/external.py
        with external.connected(kubeconfig) as cluster:
            yield cluster
        return
    if os.geteuid() != 0:
        pytest.skip(f"{SKIP_PREFIX}: the real node (containerd, kubelet) needs root")
    missing = binaries.missing()
    if missing:
        reason = (
            f"{SKIP_PREFIX}: {', '.join(missing)} not in {binaries.bin_dir()}; "
            "run `make cluster-binaries` (needs Go and the Go module proxy)"
        )
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="mg-cluster-"))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # so teardown runs on SIGTERM
    try:
        with controlplane.running(workdir) as cp:
            yield cp
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def node_images(control_plane: ControlPlane) -> NodeImages:
    if isinstance(control_plane, external.ExternalCluster):
        return external.mapped_images()
    images = NodeImages(control_plane)
    images.busybox()
    return images


@pytest.fixture
def kubectl(control_plane: ControlPlane) -> Callable[..., str]:
    """``kubectl(*args, input=None, check=True) -> stdout`` with the built kubectl."""
    return control_plane.kubectl


@pytest.fixture
def namespace(
    control_plane: ControlPlane, node_images: NodeImages, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace (named after the test) under the restricted Pod Security profile."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"{base}-{uuid.uuid4().hex[:6]}".strip("-")
    with migrationkit.restricted_namespace(control_plane, name):
        yield name


@pytest.fixture(scope="module")
def module_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A restricted namespace that the whole test module shares (named after the module)."""
    base = request.module.__name__.removeprefix("test_").replace("_", "-")[:40]
    with migrationkit.restricted_namespace(control_plane, f"{base}-{uuid.uuid4().hex[:6]}") as name:
        yield name


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any]:
    """``kubectl get ... -o json`` parsed."""
    return dict(json.loads(cp.kubectl("get", *args, "-o", "json")))


@pytest.fixture(scope="session")
def pg(
    tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane
) -> Iterator[pgserver.PgServer]:
    """One throwaway PostgreSQL server for the session, listening on the pod bridge's
    gateway so pods reach it; each test creates its own database."""
    if isinstance(control_plane, external.ExternalCluster):
        with external.running_pg(tmp_path_factory.mktemp("pg")) as external_server:
            yield external_server
        return
    net = control_plane.net
    with pgserver.running_server(
        tmp_path_factory.mktemp("pg"), host=net.gateway, clients=str(net.subnet)
    ) as server:
        yield server


# ----------------------------------------------------------------- the operator's tests


@pytest.fixture
def runner_image(node_images: NodeImages) -> str:
    return node_images.runner()


@pytest.fixture
def app_image(node_images: NodeImages) -> Callable[..., str]:
    """app_image(style, version, flavour="root", files=None) -> that sample project's image."""
    return node_images.app


@pytest.fixture
def crd(control_plane: ControlPlane) -> None:
    migrationkit.apply_crd(control_plane)


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, crd: None, runner_image: str, tmp_path: Path
) -> Iterator[operatorproc.Operator]:
    """An operator process scoped to the test's namespace, with the kubeconfig's admin rights."""
    log = tmp_path / "operator.log"
    with operatorproc.running(control_plane.env, namespace, log, runner_image=runner_image) as op:
        yield op


@pytest.fixture(scope="module")
def shipped_operator(
    control_plane: ControlPlane,
    module_namespace: str,
    node_images: NodeImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[operatorproc.Operator]:
    """One operator process for the module's namespace with exactly deploy/rbac.yaml's rights:
    what the operator ships with must be enough."""
    workdir = tmp_path_factory.mktemp("operator")
    runner = node_images.runner()
    with migrationkit.operator_with_shipped_rights(
        control_plane, module_namespace, runner, workdir
    ) as op:
        yield op


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str) -> Cluster:
    return Cluster(control_plane, namespace)
