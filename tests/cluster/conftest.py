"""Fixtures for tests against the local control plane; see tests/cluster/README.md.

Session scope: ``control_plane`` (etcd + kube-apiserver + kube-controller-manager)
and ``pod_runner``. Test scope: ``namespace``, ``images``, ``kubectl``.
Every test in this folder is marked ``cluster``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import migrationkit
import pgserver
import pytest
from kubeharness import binaries, controlplane
from kubeharness.controlplane import ControlPlane
from kubeharness.images import ImageTable
from kubeharness.podrunner import PodRunner
from kubeharness.wait import eventually

HERE = Path(__file__).parent
SKIP_PREFIX = "control-plane binaries unavailable"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the control plane (directly or through another fixture) are ``cluster``."""
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Under CI=true a cluster test may not skip: its skip becomes a failure."""
    report = yield
    if report.skipped and _in_ci() and item.get_closest_marker("cluster"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true, so a cluster test may not skip: {reason}"
    return report


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A running control plane; its kubeconfig and ``env`` serve kubectl, helm and clients."""
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
def image_table() -> ImageTable:
    return ImageTable()


@pytest.fixture(scope="session")
def pod_runner(control_plane: ControlPlane, image_table: ImageTable) -> Iterator[PodRunner]:
    """The kubelet stand-in: a Ready node; binds and runs pods as local processes."""
    runner = PodRunner(control_plane, image_table, control_plane.workdir)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
        # A rejected status write or a crashed task is a harness bug: make it visible.
        errors = [line for line in runner.runner_log().splitlines() if " ERROR " in line]
        if errors:
            warnings.warn("pod runner logged errors:\n" + "\n".join(errors[:20]), stacklevel=1)


@pytest.fixture
def images(image_table: ImageTable) -> Iterator[ImageTable]:
    """The image table, for this test only: entries added here are removed afterwards."""
    saved = image_table.snapshot()
    yield image_table
    image_table.restore(saved)


@pytest.fixture
def kubectl(control_plane: ControlPlane) -> Callable[..., str]:
    """``kubectl(*args, input=None, check=True) -> stdout`` with the built kubectl."""
    return control_plane.kubectl


@pytest.fixture
def namespace(
    control_plane: ControlPlane, pod_runner: PodRunner, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace (named after the test) whose default ServiceAccount exists."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"{base}-{uuid.uuid4().hex[:6]}".strip("-")
    control_plane.kubectl("create", "namespace", name)

    def ready() -> None:
        out = control_plane.kubectl("get", "serviceaccount,configmap", "-n", name, "-o", "name")
        assert "serviceaccount/default" in out and "configmap/kube-root-ca.crt" in out, out

    eventually(ready, timeout=30)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any]:
    """``kubectl get ... -o json`` parsed."""
    return dict(json.loads(cp.kubectl("get", *args, "-o", "json")))


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pgserver.PgServer]:
    """One throwaway PostgreSQL server for the session; each test creates its own database."""
    with pgserver.running_server(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(scope="session")
def runner_payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runner payload, built by the script the Dockerfile runs."""
    return migrationkit.build_payload(tmp_path_factory.mktemp("payload") / "payload")
