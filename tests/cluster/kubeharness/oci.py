"""Write a one-layer OCI image archive from a few files, with the stdlib only.

The node's sandbox (pause) image is made this way: it is one static binary, and
containerd must have it before the kubelet starts, with no registry to pull from.
``ctr images import`` takes the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _layer(files: Mapping[str, Path]) -> tuple[bytes, str]:
    """A gzipped tar of ``files`` ({path in image: host file}); returns it and its diff id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source in sorted(files.items()):
            info = tar.gettarinfo(str(source), arcname=name.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # reproducible: the same files give the same digest
            with source.open("rb") as f:
                tar.addfile(info, f)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def _blob(tar: tarfile.TarFile, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _add_json(tar: tarfile.TarFile, name: str, value: Any) -> None:
    data = json.dumps(value).encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archive(dest: Path, ref: str, files: Mapping[str, Path], entrypoint: list[str]) -> Path:
    """An OCI image archive at ``dest`` named ``ref``, running ``entrypoint`` as uid 65535."""
    layer, diff_id = _layer(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(dest, "w") as tar:
        layer_desc = {"mediaType": MEDIA_LAYER, **_blob(tar, layer)}
        config_desc = {"mediaType": MEDIA_CONFIG, **_blob(tar, json.dumps(config).encode())}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = {
            "mediaType": MEDIA_MANIFEST,
            **_blob(tar, json.dumps(manifest).encode()),
            # containerd names an imported image after the first; others read the tag.
            "annotations": {
                "io.containerd.image.name": ref,
                "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
            },
        }
        _add_json(tar, "oci-layout", {"imageLayoutVersion": "1.0.0"})
        _add_json(tar, "index.json", {"schemaVersion": 2, "manifests": [manifest_desc]})
    return dest
