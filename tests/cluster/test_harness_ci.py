"""Under CI=true a cluster test that would skip (no binaries) fails instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.own_node  # skips against an existing cluster (MIGRATEGATE_KUBECONFIG)

HERE = Path(__file__).parent


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_missing_binaries_skip_only_outside_ci(ci: str, outcome: str, tmp_path: Path) -> None:
    env = {**os.environ, "CI": ci, "MIGRATEGATE_CACHE": str(tmp_path / "empty-cache")}
    target = f"{HERE / 'test_harness.py'}::test_node_is_registered_ready"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE.parent.parent,
    )
    assert outcome in done.stdout, done.stdout[-2000:]
    assert "control-plane binaries unavailable" in done.stdout
    assert (done.returncode != 0) == (ci == "true")
