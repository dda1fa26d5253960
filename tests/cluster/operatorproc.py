"""Run `migrategate operator` as a subprocess against the local control plane.

Used by the operator's cluster tests and by bench/operator_bench.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from kubeharness.wait import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """One operator process, scoped to one namespace, logging JSON to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        namespace: str,
        log_path: Path,
        runner_image: str,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = {**env, **(extra_env or {})}
        self.namespace = namespace
        self.log_path = log_path
        self.runner_image = runner_image
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        cmd = [
            sys.executable,
            "-m",
            "migrategate",
            "operator",
            "--namespace",
            self.namespace,
            "--runner-image",
            self.runner_image,
            "--liveness-port",
            str(self.liveness_port),
            "--metrics-port",
            str(self.metrics_port),
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115  # the child owns it
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        eventually(self._healthy, timeout=timeout, interval=0.1)

    def _healthy(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"operator exited {self.proc.returncode}:\n{self.log()}"
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                assert resp.status == 200
        except OSError as e:
            raise AssertionError(f"not live yet: {e}") from e

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, wait=15)

    def _signal(self, sig: int, wait: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running(env: Mapping[str, str], namespace: str, log_path: Path, **kw) -> Iterator[Operator]:
    """An operator for a test; its log is printed, which pytest shows only when the test fails."""
    op = Operator(env, namespace, log_path, **kw)
    try:
        op.start()
        yield op
    finally:
        op.stop()
        print(f"--- operator log ({log_path}) ---\n{op.log()[-20000:]}")
