"""No process the fixtures start outlives the run, even when it is interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kubeharness import binaries
from kubeharness.procs import Entry, Ledger
from kubeharness.wait import eventually

HERE = Path(__file__).parent


def survivors(entries: list[Entry], tmp_path: Path) -> list[int]:
    ledger = Ledger(tmp_path / "ledger")
    ledger.path.write_text("".join(f"{e.pid} {e.start}\n" for e in entries))
    return ledger.survivors()


@pytest.mark.cluster
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_leaves_no_process(sig: signal.Signals, tmp_path: Path) -> None:
    if binaries.missing():
        pytest.skip(f"control-plane binaries unavailable: {binaries.missing()}")
    marker = tmp_path / "marker.json"
    env = {**os.environ, "MG_SELFTEST_MARKER": str(marker), "CI": ""}
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         str(HERE / "selftest_interrupted.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE.parent.parent,
    )  # fmt: skip
    try:
        eventually(lambda: _assert(marker.exists() or child.poll() is not None), timeout=120)
        assert child.poll() is None, child.communicate()[0].decode()[-3000:]
        facts = json.loads(marker.read_text())
        entries = [Entry(pid, start) for pid, start in facts["entries"]]
        assert len(entries) >= 4  # etcd, apiserver, controller manager, the container
        assert set(survivors(entries, tmp_path)) >= {e.pid for e in entries}  # all alive now
        child.send_signal(sig)
        child.communicate(timeout=90)
        eventually(lambda: _assert(survivors(entries, tmp_path) == []), timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if sig == signal.SIGKILL:  # no teardown ran: only the temp dir is left behind
        shutil.rmtree(facts["workdir"], ignore_errors=True)
    else:
        assert not Path(facts["workdir"]).exists()


def _assert(ok: bool) -> None:
    assert ok
