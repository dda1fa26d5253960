"""The test-side handle of the pod runner (the kubelet stand-in of ``kubelet.py``).

``start()`` runs ``python -m kubeharness.kubelet`` as a child process and
returns once its node is Ready and it watches pods; ``stop()`` makes it kill
every container and exit. The image table is shared through a JSON file the
child reads at each container start, so tests change it at any time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .controlplane import ControlPlane
from .images import ImageTable
from .procs import kill_group, popen, start_time

HARNESS_ROOT = Path(__file__).resolve().parent.parent  # the dir holding kubeharness/


class PodRunner:
    def __init__(
        self,
        cp: ControlPlane,
        images: ImageTable,
        workdir: Path,
        node_name: str = "migrategate-node",
        backoff: float = 1.0,
    ) -> None:
        self.cp = cp
        self.images = images
        self.workdir = workdir
        self.node_name = node_name
        self.backoff = backoff  # first restart back-off (kubelet: 10s), doubling to 10s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the child; return once its node is Ready and pods are watched."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "pod-runner.ready"
        ready.unlink(missing_ok=True)
        self.images.persist_to(self.workdir / "pod-runner-images.json")
        argv = [
            sys.executable, "-m", "kubeharness.kubelet",
            "--server", self.cp.server,
            "--pki", str(self.cp.workdir / "pki"),
            "--workdir", str(self.workdir),
            "--images", str(self.images.path),
            "--ledger", str(self.cp.ledger.path),
            "--ready-file", str(ready),
            "--node-name", self.node_name,
            "--backoff", str(self.backoff),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": f"{HARNESS_ROOT}:{os.environ.get('PYTHONPATH', '')}"}
        self.proc = popen(argv, self.cp.ledger, self.log_path, cwd=self.workdir, env=env)
        deadline = time.monotonic() + timeout
        while not ready.exists():  # start-up only; pods are never polled
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pod runner did not start:\n{self.runner_log()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the child kills every container and exits; then reap what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid, grace=0)
                self.proc.wait()
        self._kill_leftover_containers()
        self.proc = None

    def _kill_leftover_containers(self) -> None:
        """If the child died uncleanly, its containers' groups are still in the ledger."""
        control = {p.pid for p in self.cp.procs.values()}
        for e in self.cp.ledger.entries():
            if e.pid not in control and start_time(e.pid) == e.start:
                kill_group(e.pid, grace=0)

    @property
    def log_path(self) -> Path:
        return self.workdir / "pod-runner.log"

    def runner_log(self) -> str:
        """The pod runner's own log (bindings, rejected writes, crashes)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log(self, namespace: str, pod: str, container: str) -> str:
        """A container's output (all restarts), like ``kubectl logs`` would give."""
        # pod dirs are named <pod name>-<uid>; a uid is 36 characters
        pod_dirs = [d for d in (self.workdir / "pods" / namespace).glob("*") if d.name[:-37] == pod]
        parts = [p for d in pod_dirs for p in (d / "containers").glob(f"{container}-*/log")]
        parts.sort(key=lambda p: int(p.parent.name.rsplit("-", 1)[1]))
        return "".join(p.read_text(errors="replace") for p in parts)
