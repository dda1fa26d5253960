"""The image table: how a container image becomes a local "image filesystem".

There is no container runtime, so a container runs as a host process. An image
is described by an :class:`Image` entry and looked up by the image name the pod
asks for (exactly as written in the pod spec, e.g. ``"myapp:1.2"``):

- ``env``: environment additions, e.g. ``{"PATH": "/work/main/.venv/bin:/usr/bin:/bin"}``
  so that ``python`` is the project's virtualenv Python, or ``PYTHONPATH``.
  Pod ``env``/``envFrom`` override these, as a Dockerfile's ENV is overridden.
- ``mounts``: ``{container_path: host_path}`` bind mounts that make the image's
  files appear where the image would have them, e.g.
  ``{"/app": "/tmp/myproject"}`` or ``{"/opt/migrategate/payload": ...}``.
- ``working_dir``: the default working directory (the image's WORKDIR).
- ``user``: the image's default uid (its USER); ``None`` means root.
- ``entrypoint``: the image's ENTRYPOINT, used when a container has no
  ``command`` (with no entrypoint, ``args`` alone are the command line).

Commands run with the host's binaries under those mounts. A pod whose image is
not in the table gets the waiting reason ``ErrImagePull`` then
``ImagePullBackOff``, as with an image a kubelet cannot pull.

Tests extend the table per test through the ``images`` fixture::

    def test_x(images, ...):
        images["myapp:1"] = Image(mounts={"/app": str(tmp_path)}, working_dir="/app")
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The Python of the shared virtualenv (the one running the tests).
VENV_BIN = str(Path(sys.executable).parent)
DEFAULT_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    env: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: int | None = None
    entrypoint: tuple[str, ...] = ()


# Images every test can use: a shell/Python image running the host's tools.
BASE_IMAGES: dict[str, Image] = {
    "busybox": Image(env={"PATH": DEFAULT_PATH}),
    "busybox:latest": Image(env={"PATH": DEFAULT_PATH}),
    "python:3.11": Image(env={"PATH": DEFAULT_PATH}),
    "nonroot": Image(env={"PATH": DEFAULT_PATH}, user=65534),
}


class ImageTable(MutableMapping[str, Image]):
    """A thread-safe mapping (the pod runner reads it from its own thread)."""

    def __init__(self, entries: dict[str, Image] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries = dict(BASE_IMAGES if entries is None else entries)
        self.path: Path | None = None

    def persist_to(self, path: Path) -> None:
        """Keep ``path`` (read by the pod runner process) equal to the table from now on."""
        with self._lock:
            self.path = path
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {name: asdict(image) for name, image in self._entries.items()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)  # atomic: the reader never sees half a file

    def __getitem__(self, name: str) -> Image:
        with self._lock:
            return self._entries[name]

    def __setitem__(self, name: str, image: Image) -> None:
        with self._lock:
            self._entries[name] = image
            self._save()

    def __delitem__(self, name: str) -> None:
        with self._lock:
            del self._entries[name]
            self._save()

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def snapshot(self) -> dict[str, Image]:
        with self._lock:
            return dict(self._entries)

    def restore(self, entries: dict[str, Image]) -> None:
        with self._lock:
            self._entries = dict(entries)
            self._save()


class ImageFile(Mapping[str, Image]):
    """The pod runner's read-only view of a persisted table, read afresh at each lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Image]:
        raw = json.loads(self.path.read_text())
        return {
            name: Image(**{**fields, "entrypoint": tuple(fields.get("entrypoint", ()))})
            for name, fields in raw.items()
        }

    def __getitem__(self, name: str) -> Image:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())
