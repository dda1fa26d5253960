"""Run by test_harness_teardown.py in a child pytest, which it then interrupts.

Not collected on its own (the file name does not start with ``test_``). It
starts the cluster and a long-running pod, writes what it made (work dir,
cgroup, bridge) to the marker file named by MG_SELFTEST_MARKER, then waits to
be interrupted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from kubeharness import manifests as m
from kubeharness import node
from kubeharness.controlplane import ControlPlane
from kubeharness.wait import eventually


def test_wait_to_be_interrupted(control_plane: ControlPlane, namespace: str) -> None:
    marker = Path(os.environ["MG_SELFTEST_MARKER"])
    pod = m.pod("sleeper", m.container("main", "exec sleep 600"))
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))

    def running() -> None:
        out = control_plane.kubectl("get", "pod", "sleeper", "-n", namespace, "-o", "json")
        assert json.loads(out)["status"].get("phase") == "Running"

    eventually(running, timeout=60)
    cgroup = node.cgroup_name(control_plane.node_id)
    facts = {
        "workdir": str(control_plane.workdir),
        "cgroup": cgroup,
        "cgroup_pids": len(node.cgroup_pids(cgroup)),
        "processes": len(control_plane.ledger.entries()),
    }
    marker.write_text(json.dumps(facts))
    time.sleep(300)  # the parent interrupts us long before this ends
