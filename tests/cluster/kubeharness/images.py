"""Images on the node: built by ``imagebuild`` (cached by content) and imported into
the node's containerd once each, as a registry pull would leave them. Pods name
them with ``imagePullPolicy: IfNotPresent``; nothing is ever pulled.
"""

from __future__ import annotations

from pathlib import Path

from . import imagebuild
from .controlplane import ControlPlane


class NodeImages:
    """Each method builds (or finds) an image, imports it once, and returns the name a
    pod spec uses."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.loaded: dict[Path, str] = {}

    def load(self, built: imagebuild.BuiltImage, name: str | None = None) -> str:
        name = name or built.name
        if self.loaded.get(built.archive) != name:
            socket = str(self.cp.node_paths.containerd_socket)
            imagebuild.import_into_containerd(built.archive, name, self.cp.bin_dir / "ctr", socket)
            self.loaded[built.archive] = name
        return name

    def busybox(self) -> str:
        """As ``busybox`` (what kubeharness.manifests uses)."""
        return self.load(imagebuild.busybox(), "busybox")

    def runner(self) -> str:
        """The migrategate image (operator and runner payload), from image/Dockerfile."""
        return self.load(imagebuild.runner_image())

    def app(
        self, style: str, version: str, flavour: str = "root", files: imagebuild.ProjectFiles = None
    ) -> str:
        """A sample application image whose WORKDIR holds ``style``'s project at
        ``version`` (``files`` adds or replaces files of the project)."""
        return self.load(imagebuild.app_image(style, version, flavour, files))
