"""Nothing the cluster fixtures make outlives the run, even when it is interrupted.

The child pytest runs in its own network, PID and mount namespaces (as a second
cluster beside the session's must: two kube-proxies in one network namespace
would rewrite each other's rules). On SIGINT and SIGTERM its own teardown must
leave nothing: it fails the run, naming what is left. On SIGKILL no teardown
runs, and the namespaces are what guarantee it: every process, mount, bridge
and iptables chain goes with them; only the empty cgroup directories stay,
which this test then removes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kubeharness import binaries, node
from kubeharness.network import ISOLATED
from kubeharness.wait import eventually

pytestmark = pytest.mark.own_node  # skips against an existing cluster (MIGRATEGATE_KUBECONFIG)

HERE = Path(__file__).parent


def inner_pid(unshare_pid: int) -> int:
    """The child pytest: the process unshare forked into the new namespaces."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    assert children, "unshare has not forked yet"
    return int(children[0])


def in_namespace(pid_ns: str) -> list[int]:
    """Host pids of the live processes in the PID namespace ``pid_ns``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == pid_ns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.cluster
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_leaves_nothing(sig: signal.Signals, tmp_path: Path) -> None:
    if binaries.missing():
        pytest.skip(f"control-plane binaries unavailable: {binaries.missing()}")
    marker = tmp_path / "marker.json"
    env = {**os.environ, "MG_SELFTEST_MARKER": str(marker), "CI": ""}
    child = subprocess.Popen(
        [*ISOLATED, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "selftest_interrupted.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE.parent.parent,
    )  # fmt: skip
    try:
        eventually(lambda: _assert(marker.exists() or child.poll() is not None), timeout=240)
        assert child.poll() is None, child.communicate()[0].decode()[-3000:]
        facts = json.loads(marker.read_text())
        assert facts["processes"] >= 7  # etcd, apiserver, kcm, scheduler, containerd, ...
        assert facts["cgroup_pids"] >= 2  # the pod's sandbox and its container
        pytest_pid = inner_pid(child.pid)
        pid_ns = os.readlink(f"/proc/{pytest_pid}/ns/pid")
        assert len(in_namespace(pid_ns)) >= facts["processes"] + facts["cgroup_pids"]
        os.kill(pytest_pid, sig)
        output = child.communicate(timeout=120)[0].decode()
        eventually(lambda: _assert(in_namespace(pid_ns) == []), timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    cgroup = facts["cgroup"]
    assert node.cgroup_pids(cgroup) == []
    if sig == signal.SIGKILL:  # no teardown ran: empty cgroups and the work dir are left
        assert node.remove_cgroup_root(cgroup) == []
        shutil.rmtree(facts["workdir"], ignore_errors=True)
    else:
        assert "left behind" not in output, output[-3000:]
        assert not any((h / cgroup).exists() for h in node.cgroup_hierarchies()), output[-3000:]
        assert not Path(facts["workdir"]).exists()


def _assert(ok: bool) -> None:
    assert ok
