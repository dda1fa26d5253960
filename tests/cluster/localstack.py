"""Everything migrategate needs on this machine, in one context manager: the cluster with
its real node, PostgreSQL on the pod network, the migrategate image, and the operator
installed by its Helm chart as users install it.

The demo and the benchmarks use it; the tests build the same pieces from fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import migrationkit
import pgserver
from kubeharness import controlplane, node
from kubeharness.controlplane import ControlPlane
from kubeharness.images import NodeImages

OPERATOR_NAMESPACE = "migrategate-system"


@dataclass
class Stack:
    cp: ControlPlane
    pg: pgserver.PgServer
    images: NodeImages
    namespace: str

    def operator_log(self) -> str:
        (pod,) = migrationkit.operator_pods(self.cp, OPERATOR_NAMESPACE)
        return self.cp.kubectl("logs", "-n", OPERATOR_NAMESPACE, pod["metadata"]["name"])

    def operator_pid(self) -> int:
        """The operator container's process, as the node's kernel sees it."""
        pids = [p for p in node.cgroup_pids(node.cgroup_name(self.cp.node_id)) if _is_operator(p)]
        assert len(pids) == 1, pids
        return pids[0]


def _is_operator(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"bin/migrategate") for a in argv) and b"operator" in argv


@contextlib.contextmanager
def running(
    workdir: Path, namespace: str, say: Callable[[str], None] = lambda text: None
) -> Iterator[Stack]:
    """Start it all; stop it all on exit. ``namespace`` is made for the application."""
    with contextlib.ExitStack() as stack:
        say(
            "Starting the cluster: etcd, kube-apiserver, controller manager, scheduler, and a node"
            "\n    (containerd + runc, kubelet, kube-proxy) on a bridge local to this machine"
        )
        cp = stack.enter_context(controlplane.running(workdir / "cluster"))
        say(f"Starting PostgreSQL on the pod network's gateway, {cp.net.gateway}")
        net = cp.net
        pg = stack.enter_context(
            pgserver.running_server(workdir / "pg", host=net.gateway, clients=str(net.subnet))
        )
        say("Building the migrategate image from image/Dockerfile (cached after the first run)")
        images = NodeImages(cp)
        runner = images.runner()
        for name in (OPERATOR_NAMESPACE, namespace):
            stack.enter_context(migrationkit.restricted_namespace(cp, name))
        say(f"helm install rel charts/migrategate -n {OPERATOR_NAMESPACE}")
        migrationkit.install_operator(cp, OPERATOR_NAMESPACE, runner)
        yield Stack(cp, pg, images, namespace)
