"""`make demo` is the front door: run it as a newcomer would and check how it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import samples
from demo import APP, STYLE
from kubeharness import binaries, imagebuild
from kubeharness.network import ISOLATED

pytestmark = pytest.mark.own_node  # the demo starts its own cluster

DEMO = Path(__file__).with_name("demo.py")


def test_demo_migrates_and_releases_the_example_app(control_plane) -> None:
    # control_plane only to share the suite's skip/CI rule; the demo starts its own.
    assert not binaries.missing()
    # Its own namespaces, as a second cluster must; its images built out here, where pip
    # can reach PyPI should a base need building.
    imagebuild.runner_image()
    for version in ("v1", "v2"):
        imagebuild.app_image(STYLE, version, files={"serve.py": APP})
    env = {**os.environ, "PYTHONPATH": str(DEMO.parents[1])}
    done = subprocess.run(
        [*ISOLATED, sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    head = samples.head_of("v2")
    assert f"schema at {head}, v2 pods Ready" in out
    assert out.count(f"app v2 serving on schema {head}") == 2  # both replicas, new code, new schema
    assert "app:v2 gated Pending" in out  # the new pods waited for their migration
    assert "Cleaned up" in out
