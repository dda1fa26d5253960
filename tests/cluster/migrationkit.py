"""Pieces every migration test on the local control plane needs: the runner payload
image, sample application images, and a kubeconfig for a ServiceAccount's token."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import operatorproc
from kubeharness.images import DEFAULT_PATH, Image

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import samples  # noqa: E402
from migrategate.runner import contract  # noqa: E402

NONROOT = 65534  # the Job's restricted securityContext refuses root


def build_payload(dest: Path) -> Path:
    """The runner payload, laid out by the same script the Dockerfile runs."""
    spec = importlib.util.spec_from_file_location("build_payload", REPO / "image/build_payload.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build_payload(dest))


def runner_image(payload: Path) -> Image:
    """The migrategate image as the init container sees it: the payload at its fixed path."""
    return Image(
        env={"PATH": DEFAULT_PATH}, mounts={contract.IMAGE_PAYLOAD_DIR: str(payload)}, user=NONROOT
    )


def app_image(style: str, version: str, dest: Path) -> Image:
    """An application image whose /app is a sample Alembic project at `version`."""
    app_dir = samples.materialize(style, version, dest)
    return Image(
        # A system Python with the venv's packages, so nothing of the repo leaks in
        # (the runner puts the working directory on sys.path itself).
        env=operatorproc.nonroot_python_env(dest.parent / "python-shim"),
        mounts={"/app": str(app_dir)},
        working_dir="/app",
        user=NONROOT,
    )


def token_kubeconfig(server: str, ca_file: Path, token: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a ServiceAccount token and nothing else."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    return path
