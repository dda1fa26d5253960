"""Everything migrategate needs on this machine, in one context manager: the control plane,
the pod runner, PostgreSQL, the CRD, a namespace and the operator.

The demo and the benchmarks use it; the tests build the same pieces from fixtures.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import migrationkit
import operatorproc
import pgserver
from kubeharness import controlplane
from kubeharness.controlplane import ControlPlane
from kubeharness.images import Image, ImageTable
from kubeharness.podrunner import PodRunner
from kubeharness.wait import eventually
from migrationkit import REPO

CRD = REPO / "crds" / "databasemigrations.migrategate.io.yaml"


@dataclass
class Stack:
    cp: ControlPlane
    runner: PodRunner
    pg: pgserver.PgServer
    namespace: str
    operator: operatorproc.Operator


@contextlib.contextmanager
def running(
    workdir: Path, namespace: str, apps: Mapping[str, Image], say=lambda text: None
) -> Iterator[Stack]:
    """Start it all, with the runner image and `apps` in the image table; stop it all on exit."""
    images = ImageTable()
    images[operatorproc.RUNNER_IMAGE] = migrationkit.runner_image(
        migrationkit.build_payload(workdir / "payload")
    )
    images.update(apps)
    with contextlib.ExitStack() as stack:
        say("Starting etcd, kube-apiserver and kube-controller-manager")
        cp = stack.enter_context(controlplane.running(workdir / "cluster"))
        runner = PodRunner(cp, images, cp.workdir)
        runner.start()
        stack.callback(runner.stop)
        say("Starting PostgreSQL")
        pg = stack.enter_context(pgserver.running_server(workdir / "pg"))
        cp.kubectl("apply", "-f", str(CRD))
        cp.kubectl("create", "namespace", namespace)
        eventually(lambda: _has_default_service_account(cp, namespace), timeout=30)
        say("Starting the operator")
        operator = operatorproc.Operator(cp.env, namespace, workdir / "operator.log")
        operator.start()
        stack.callback(operator.stop)
        yield Stack(cp, runner, pg, namespace, operator)


def _has_default_service_account(cp: ControlPlane, namespace: str) -> None:
    accounts = json.loads(cp.kubectl("get", "serviceaccounts", "-n", namespace, "-o", "json"))
    assert any(a["metadata"]["name"] == "default" for a in accounts["items"])
