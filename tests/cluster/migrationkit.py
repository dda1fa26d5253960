"""Pieces every migration test on the local cluster needs: the repository's paths and
a kubeconfig for a ServiceAccount's token."""

from __future__ import annotations

import json
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


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
