"""What the cluster benchmarks share: their own namespaces, the stack, the operator pod's facts.

Each cluster benchmark runs in its own network, PID and mount namespaces
(``isolated``): a second cluster in the host's network namespace would fight any
other one there (a test run's) over kube-proxy's iptables rules, and its teardown
sweeps every ``KUBE-*`` chain. In its own namespaces it cannot, and whatever a
killed run leaves (processes, mounts, the bridge, iptables) goes with them. The
images are built beforehand, outside: a build may need the network (pip), and the
namespaces have none. Inside, ``stack`` is tests/cluster/localstack.py's stack:
the cluster with its real node, PostgreSQL on the pod bridge and the operator
installed by its Helm chart in ``migrategate-system``.

Needs root and PYTHONPATH=tests:tests/cluster (``make bench`` sets it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gatewatch
import localstack
import migrationkit
from kubeharness import binaries, imagebuild
from kubeharness.controlplane import ControlPlane
from kubeharness.network import ISOLATED

INSIDE = "MIGRATEGATE_BENCH_ISOLATED"  # set in the re-run benchmark's environment


def say(text: str) -> None:
    """Progress on stderr; stdout carries the results."""
    print(f"==> {text}", file=sys.stderr, flush=True)


def publish(results: Mapping[str, Any], path: Path | None) -> int:
    """Print ``results`` as JSON on stdout and, with ``path`` (--json), write them there
    too; 0, the benchmark's exit status."""
    text = json.dumps(results, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n")
    return 0


def arguments(
    name: str, doc: str, runs: int, runs_help: str = "counted runs", warmup: bool = False
) -> argparse.ArgumentParser:
    """``bench <name>``'s parser with what the cluster benchmarks share: ``--runs`` (default
    ``runs``), ``--json`` and, with ``warmup``, ``--warmup`` (uncounted first runs); each adds
    its own."""
    parser = argparse.ArgumentParser(prog=f"bench {name}", description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs, help=runs_help)
    if warmup:
        why = "uncounted first runs (cold API server paths, TLS)"
        parser.add_argument("--warmup", type=int, default=1, help=why)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def isolated(name: str, argv: list[str], images: Callable[[], object]) -> int | None:
    """Re-run benchmark ``name`` (``python -m bench.<name>_bench argv``) in its own
    namespaces and return its exit status; None when this already is that run (the
    caller then does the work).

    ``images`` builds (or finds in the cache) every image the run will load. SIGINT
    and SIGTERM are passed on as SIGTERM, on which the run tears its stack down.
    """
    if os.environ.get(INSIDE):
        signal.signal(signal.SIGTERM, _interrupt_once)
        signal.signal(signal.SIGINT, _interrupt_once)
        return None
    if os.geteuid() != 0:
        raise SystemExit("the cluster benchmarks need root (the node: containerd, kubelet)")
    if binaries.missing():
        raise SystemExit(f"{', '.join(binaries.missing())} missing: run `make cluster-binaries`")
    say("Building the images (cached after the first run)")
    images()
    env = {**os.environ, INSIDE: "1"}
    command = [*ISOLATED, sys.executable, "-m", f"bench.{name}_bench", *argv]
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: object) -> None:
        for pid in _children(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _children(pid: int) -> list[int]:
    """unshare's child: the benchmark inside the namespaces (as this namespace sees it)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _interrupt_once(signum: int, frame: object) -> None:
    """Stop the run; a second signal must not cut its teardown short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def build_images(*apps: tuple[str, str] | tuple[str, str, Mapping[str, str]]) -> None:
    """The migrategate image and the sample app images ``(style, version[, files])``
    (the arguments of ``NodeImages.app``), into the cache."""
    imagebuild.runner_image()
    for style, version, *files in apps:
        imagebuild.app_image(style, version, files=files[0] if files else None)


@contextlib.contextmanager
def stack(namespace: str) -> Iterator[localstack.Stack]:
    """localstack's stack in a temporary work dir, with ``namespace`` for the application."""
    with (
        tempfile.TemporaryDirectory(prefix="mg-bench-") as tmp,
        localstack.running(Path(tmp), namespace, say) as running,
    ):
        yield running


def recorder(cp: ControlPlane, namespace: str) -> gatewatch.ProcessRecorder:
    """The bench's own watches of ``namespace``, in a child process, started.

    Once in the smoke runs (1 start of about 14, on a loaded 2-core machine) the
    child's initial listing failed and its start timed out after 30 s without
    saying why (gatewatch keeps the child's error to itself); the cause is not
    known. A second child then starts normally. Nothing is measured before the
    recorder has started, so a retry changes no figure.
    """
    for attempt in (1, 2):
        rec = gatewatch.ProcessRecorder(cp.server, cp.workdir / "pki", namespace)
        try:
            rec.start()
            return rec
        except queue.Empty:
            rec.stop()
            if attempt == 2:
                raise
            say(f"the watch recorder of {namespace} did not start within 30 s; starting another")
    raise AssertionError("unreachable")


# ------------------------------------------------------------------- the operator pod


def operator_pod(running: localstack.Stack) -> dict[str, Any]:
    (pod,) = migrationkit.operator_pods(running.cp, localstack.OPERATOR_NAMESPACE)
    return pod


def operator_metrics(running: localstack.Stack) -> str:
    """The operator's /metrics, straight from its pod (the bridge reaches pod IPs)."""
    pod = operator_pod(running)
    (container,) = pod["spec"]["containers"]
    (port,) = [p["containerPort"] for p in container.get("ports", []) if p["name"] == "metrics"]
    url = f"http://{pod['status']['podIP']}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
