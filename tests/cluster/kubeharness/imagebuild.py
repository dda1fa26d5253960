"""Real OCI images for the real-node tests, built with buildah; nothing is ever pulled.

The node's containerd cannot pull (there is no registry), so every image a test
pod names is built here and imported with ``ctr images import``:

- ``pybase()``: Debian bookworm's own python3 (mmdebstrap, then ``buildah from
  scratch``), the base of everything else; it stands in for ``python:3.x-slim``;
- ``runner_image()``: ``image/Dockerfile`` as it is, on that base;
- ``app_image(style, version, flavour)``: a sample Alembic project in ``/app`` on an
  "app base" (pybase + a venv with SQLAlchemy, Alembic and drivers);
- ``busybox()``: Debian's busybox-static with its applet links, for generic pods.

Each result is an OCI archive under ``<cache>/images/`` (cache =
``$MIGRATEGATE_CACHE`` or ``~/.cache/migrategate``) whose file name carries a
content hash of every input, so a changed input builds anew and an unchanged one
returns at once without running buildah. The base images also stay in buildah's
storage (``/var/lib/containers``) as parents; when only their archive survived,
they are loaded back from it.

Hygiene: every working container is removed in ``finally``; RUN steps use the
host network (no CNI bridge or iptables chains); no mount outlives a command.
Leaf images are removed from buildah's storage once archived.

Needs root and the Debian packages buildah, mmdebstrap, runc and busybox-static;
the Debian mirror is the one apt is configured with (/etc/apt/sources.list*),
and pip reaches PyPI from inside RUN with the host's CA bundle mounted.

From the repository (samples and kubeharness import from tests/ and tests/cluster/):
``PYTHONPATH=tests:tests/cluster .venv/bin/python -m kubeharness.imagebuild --help``.
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import samples  # tests/samples: PYTHONPATH holds tests (pytest's pythonpath, make)

REPO = Path(__file__).resolve().parents[3]
TESTS = REPO / "tests"

# Bump when a recipe changes in a way the hashed inputs cannot show (e.g. a new
# buildah option): every key changes, so everything is rebuilt once.
RECIPE_VERSION = "1"

SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Like Debian's slim images: no man pages, docs or translations (a smaller image
# imports faster); the copyright files stay.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# Merged /usr by symlinks, as debootstrap does: otherwise apt satisfies
# init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, which pulls in
# perl (about 50 MB that no Python image has).
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/maybe-merged-usr"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Files that replace a sample project's own in its image: path under /app -> text.
ProjectFiles = Mapping[str, str] | None

RUNTIME = "/usr/bin/runc"  # crun cannot run on these hybrid-cgroup hosts
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUSYBOX = Path("/bin/busybox")  # from the busybox-static package
APP_VENV = "/opt/venv"
APP_USER = "app"

# Repositories of the images built here: ``prune`` removes their stale tags.
OUR_REPOSITORIES = tuple(
    f"localhost/{repo}:"
    for repo in (
        "migrategate",
        "migrategate-pybase",
        "migrategate-appbase",
        "migrategate-app",
        "busybox",
    )
)
PACKAGES_HINT = "apt-get install buildah mmdebstrap runc busybox-static"
BUILD_TIMEOUT = 1800  # seconds; pip and mmdebstrap use the network, never hang forever


class BuildError(RuntimeError):
    """A build step failed; the message is one line ending in the tail of its log."""


# (argv, log file) -> stdout. Injected by the unit tests, which must not run buildah.
Runner = Callable[[Sequence[str], Path], str]


@dataclass(frozen=True)
class BuiltImage:
    name: str  # the name in buildah's storage, e.g. localhost/migrategate:0123abcd...
    archive: Path  # an OCI archive with no name inside: import_into_containerd names it
    key: str  # content hash of every input (also the tag's suffix)


# An app base's Python packages (pip requirements) by stack name. The samples
# import SQLAlchemy, Alembic and pydantic_settings (grep tests/samples); the runner
# picks psycopg, then psycopg2, then asyncpg. [asyncio] brings greenlet.
STACKS: dict[str, tuple[str, ...]] = {
    "sqla2": (
        "SQLAlchemy[asyncio]>=2,<3",
        "alembic>=1.13",
        "psycopg[binary]>=3.1",
        "psycopg2-binary>=2.9",
        "asyncpg>=0.29",
        "pydantic-settings>=2",
    ),
    # SQLAlchemy 1.4 has no psycopg (v3) dialect, so psycopg2 (and asyncpg).
    "sqla14": (
        "SQLAlchemy[asyncio]>=1.4,<2",
        "alembic>=1.7",
        "psycopg2-binary>=2.9",
        "asyncpg>=0.29",
        "pydantic-settings>=2",
    ),
    "asyncpg-only": (
        "SQLAlchemy[asyncio]>=2,<3",
        "alembic>=1.13",
        "asyncpg>=0.29",
        "pydantic-settings>=2",
    ),
}


@dataclass(frozen=True)
class Flavour:
    stack: str  # key of STACKS
    user: str | None = None  # the image's USER; None: no USER (root)


FLAVOURS: dict[str, Flavour] = {
    "root": Flavour("sqla2"),
    "named-user": Flavour("sqla2", APP_USER),  # non-numeric: runAsNonRoot cannot verify it
    "sqla14": Flavour("sqla14"),
    "asyncpg-only": Flavour("asyncpg-only"),
}


# --- content hashing (pure) -------------------------------------------------------


def content_key(parts: Iterable[tuple[str, bytes]]) -> str:
    """A short hex hash of labelled inputs; the lengths make (a, bc) differ from (ab, c)."""
    digest = hashlib.sha256()
    for label, data in parts:
        for chunk in (label.encode(), data):
            digest.update(len(chunk).to_bytes(8, "big"))
            digest.update(chunk)
    return digest.hexdigest()[:16]


def text_parts(label: str, values: Iterable[str]) -> list[tuple[str, bytes]]:
    return [(f"{label}:{i}", value.encode()) for i, value in enumerate(values)]


def read_ignore(path: Path) -> list[str]:
    """The patterns of a .dockerignore (no comments or blank lines)."""
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_ignored(rel: str, patterns: Sequence[str]) -> bool:
    """Whether .dockerignore patterns drop ``rel`` (or a folder above it).

    Enough for this repository's patterns (no ``!``): ``**/x`` matches any path
    component, anything else matches a path from the context root.
    """
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern.rstrip("/")) for prefix in prefixes):
            return True
    return False


def tree_parts(root: Path, base: Path, ignore: Sequence[str] = ()) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root`` as (path relative to ``base`` + kind, content), sorted.

    The executable bit and symlink targets count: both change the image.
    """
    paths = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
    for path in paths:
        rel = path.relative_to(base).as_posix()
        if is_ignored(rel, ignore) or (path.is_dir() and not path.is_symlink()):
            continue
        if path.is_symlink():
            yield f"link:{rel}", os.readlink(path).encode()
        else:
            kind = "exec" if os.access(path, os.X_OK) else "file"
            yield f"{kind}:{rel}", path.read_bytes()


# --- names (pure) -----------------------------------------------------------------


def normalize_reference(name: str) -> str:
    """The name containerd's CRI looks an image up by (docker's normalisation).

    ``busybox`` -> ``docker.io/library/busybox:latest``; ``localhost/x:1`` stays.
    The kubelet asks CRI for the pod spec's image, and CRI normalises it so, so an
    imported image must carry this form to be found with IfNotPresent.
    """
    remainder, at, digest = name.partition("@")
    first, slash, rest = remainder.partition("/")
    is_domain = slash and (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    )
    domain, path = (first, rest) if is_domain else ("docker.io", remainder)
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not at and ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{domain}/{path}{at}{digest}"


def app_tag(style: str, version: str, flavour: str, key: str) -> str:
    return f"localhost/migrategate-app:{style}-{version}-{flavour}-{key}"


# --- the Debian mirror (read from apt's configuration) ------------------------------


def debian_mirror(suite: str = SUITE, apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI apt is configured to fetch ``suite`` from (one-line or deb822 sources).

    The machine may reach Debian's archive only through that mirror.
    """
    files = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*"))
    for path in files:
        if path.suffix == ".sources" and path.is_file():
            uri = _deb822_uri(path.read_text(), suite)
        elif path.name.endswith(".list") and path.is_file():
            uri = _one_line_uri(path.read_text(), suite)
        else:
            continue
        if uri:
            return uri
    return FALLBACK_MIRROR


def _deb822_uri(text: str, suite: str) -> str | None:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            return fields.get("uris", "").split()[0] if fields.get("uris") else None
    return None


def _one_line_uri(text: str, suite: str) -> str | None:
    for line in text.splitlines():
        # deb [arch=amd64 signed-by=...] URI SUITE COMPONENT...
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) > 2 and words[0] == "deb" and words[2] == suite:
            return words[1]
    return None


# --- running commands ------------------------------------------------------------------


def run_command(argv: Sequence[str], log: Path) -> str:
    """Run ``argv``; stderr (and stdout) go to ``log``; return stdout; raise BuildError."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        sink.flush()
        try:
            done = subprocess.run(
                list(argv), stdout=subprocess.PIPE, stderr=sink, text=True, timeout=BUILD_TIMEOUT
            )
        except FileNotFoundError:
            raise BuildError(f"{argv[0]} not found: {PACKAGES_HINT}") from None
        except subprocess.TimeoutExpired:
            raise BuildError(
                f"{_what(argv)} timed out after {BUILD_TIMEOUT}s [log: {log}]"
            ) from None
        sink.write(done.stdout if done.stdout.endswith("\n") else f"{done.stdout}\n")
        sink.write(f"# exit {done.returncode} after {time.monotonic() - started:.1f}s\n")
    if done.returncode != 0:
        tail = log_tail(log.read_text(errors="replace").rsplit("\n$ ", 1)[-1])
        raise BuildError(f"{_what(argv)} failed (exit {done.returncode}): {tail} [log: {log}]")
    return done.stdout


def _what(argv: Sequence[str]) -> str:
    name = Path(argv[0]).name
    return f"{name} {argv[1]}" if name == "buildah" and len(argv) > 1 else name


def log_tail(text: str, lines: int = 3) -> str:
    """The telling lines of a command's output, on one line: its errors, else its last lines."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in kept if not line.startswith("# exit")]
    errors = [line for line in kept if line.startswith(("E:", "Error", "error", "ERROR", "fatal"))]
    return " | ".join((errors or kept)[-lines:])


def say(message: str) -> None:
    print(f"[imagebuild {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Same root as kubeharness.binaries: $MIGRATEGATE_CACHE or ~/.cache/migrategate."""
    root = Path(os.environ.get("MIGRATEGATE_CACHE", Path.home() / ".cache" / "migrategate"))
    return root / "images"


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.0f} MB"


# --- the builder ------------------------------------------------------------------------


@dataclass
class ImageBuilder:
    """Builds and caches the images; the command runner and the paths are injectable."""

    cache: Path = field(default_factory=cache_dir)
    run: Runner = run_command
    log: Callable[[str], None] = say
    repo: Path = REPO
    busybox_binary: Path = BUSYBOX

    # -- the cache --

    def archive_path(self, kind: str, key: str) -> Path:
        return self.cache / f"{kind}-{key}.oci.tar"

    def log_path(self, kind: str, key: str) -> Path:
        return self.cache / "logs" / f"{kind}-{key}.log"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One build at a time per cache (parallel test workers share it)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _obtain(
        self,
        kind: str,
        image: BuiltImage,
        build: Callable[[Path], None],
        parent: Callable[[], object] | None = None,
        local: bool = False,
    ) -> BuiltImage:
        """The cached archive, without running any command; else parent first, then build.

        ``local``: the image is about to be a parent, so it must also be in
        buildah's storage. Keys are pure functions of the inputs, so a cache hit
        never needs to look at (or build) a parent.
        """
        if not image.archive.exists():
            if parent is not None:
                parent()
            self._build_locked(kind, image, build)
        if local:
            self._ensure_local(image)
        return image

    def _build_locked(self, kind: str, image: BuiltImage, build: Callable[[Path], None]) -> None:
        with self._locked():
            if image.archive.exists():  # another worker built it meanwhile
                return
            started = time.monotonic()
            self.log(f"{kind}: building {image.name}")
            build(self.log_path(kind, image.key))
            elapsed = time.monotonic() - started
            self.log(f"{kind}: {image.name} in {elapsed:.1f}s ({_size(image.archive)})")

    def _buildah(self, log: Path, *args: str) -> str:
        return self.run(["buildah", *args], log).strip()

    def _push(self, image: BuiltImage, log: Path) -> None:
        """Write ``image`` as an OCI archive, atomically (a reader never sees half of it).

        zstd: about twice as fast as gzip both here and when containerd unpacks
        (buildah 1.28 ignores --disable-compression). No reference name inside:
        ``ctr import --index-name`` gives it the exact name a pod asks for.
        """
        partial = image.archive.with_name(f".{image.archive.name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        try:
            zstd = ["--compression-format", "zstd"]
            self._buildah(log, "push", *zstd, image.name, f"oci-archive:{partial}")
            partial.replace(image.archive)
        finally:
            partial.unlink(missing_ok=True)

    @contextmanager
    def _container(self, log: Path, image: str) -> Iterator[str]:
        """A buildah working container from a local image, removed however we leave."""
        ctr = self._buildah(log, "from", "--pull=never", image)
        try:
            yield ctr
        finally:
            try:
                self._buildah(log, "rm", ctr)
            except BuildError as err:
                self.log(f"warning: could not remove working container {ctr}: {err}")

    def _commit(self, log: Path, ctr: str, image: BuiltImage, keep: bool) -> None:
        """Commit, archive, and (for leaf images, never a parent) drop it from storage."""
        self._buildah(log, "commit", "--quiet", ctr, image.name)
        self._push(image, log)
        if not keep:
            self._buildah(log, "rmi", image.name)

    def _ensure_local(self, image: BuiltImage) -> None:
        """Make a parent image available to ``buildah from --pull=never``.

        Its archive may have outlived buildah's storage (a cache restored on a new
        machine): load it from the archive, a local file, not a registry.
        """
        log = self.log_path("load", image.key)
        try:
            self._buildah(
                log, "inspect", "--type", "image", "--format", "{{.FromImageID}}", image.name
            )
            return
        except BuildError:
            pass
        self.log(f"loading {image.name} from {image.archive.name}")
        ids = self._buildah(log, "pull", "--quiet", f"oci-archive:{image.archive}").split()
        if not ids:
            raise BuildError(f"buildah pull printed no image id for {image.archive} [log: {log}]")
        self._buildah(log, "tag", ids[-1], image.name)

    # -- 1. the Debian root filesystem and the Python base --

    def _rootfs_key(self) -> str:
        parts = text_parts("packages", BASE_PACKAGES) + text_parts("dpkg", DPKG_OPTIONS)
        parts.append(("hook", MERGED_USR_HOOK.encode()))
        # The mirror is not hashed: any mirror serves the same suite.
        return content_key([("recipe", f"{RECIPE_VERSION}/rootfs/{SUITE}".encode()), *parts])

    def _rootfs_path(self) -> Path:
        return self.cache / f"debian-{SUITE}-{self._rootfs_key()}.rootfs.tar"

    def debian_rootfs(self) -> Path:
        """A bookworm minbase with python3 as a tarball (mmdebstrap; cached)."""
        tar = self._rootfs_path()
        if not tar.exists():
            with self._locked():
                if not tar.exists():
                    self._mmdebstrap(tar, self.log_path("rootfs", self._rootfs_key()))
        return tar

    def _mmdebstrap(self, tar: Path, log: Path) -> None:
        mirror = debian_mirror()
        started = time.monotonic()
        self.log(f"rootfs: mmdebstrap {SUITE} from {mirror}")
        partial = tar.with_name(f".{tar.name}.{os.getpid()}.partial.tar")
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            # Snapshot mirrors serve Release files past their Valid-Until date.
            '--aptopt=Acquire::Check-Valid-Until "false"',
            *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
            f"--hook-dir={MERGED_USR_HOOK}",
            SUITE,
            str(partial),
            mirror,
        ]
        try:
            self.run(argv, log)  # BuildError: "mmdebstrap failed (exit N): E: ..."
            partial.replace(tar)
        finally:
            partial.unlink(missing_ok=True)
        self.log(f"rootfs: {tar.name} in {time.monotonic() - started:.1f}s ({_size(tar)})")

    def _pybase_image(self) -> BuiltImage:
        rootfs = self._rootfs_path()
        key = content_key(
            [("recipe", f"{RECIPE_VERSION}/pybase".encode()), ("rootfs", rootfs.name.encode())]
        )
        name = f"localhost/migrategate-pybase:{key}"
        return BuiltImage(name, self.archive_path("pybase", key), key)

    def pybase(self, local: bool = False) -> BuiltImage:
        """``localhost/migrategate-pybase:<key>``: the rootfs plus a python:slim-like config."""
        image = self._pybase_image()

        def build(log: Path) -> None:
            with self._container(log, "scratch") as ctr:
                self._buildah(log, "add", ctr, str(self._rootfs_path()), "/")
                # A scratch image has no PATH: the Dockerfile's ENV PATH="...:${PATH}"
                # would otherwise leave the runner image without /usr/bin.
                env = ["--env", f"PATH={SYSTEM_PATH}", "--env", "LANG=C.UTF-8"]
                self._buildah(log, "config", *env, "--cmd", "python3", ctr)
                self._commit(log, ctr, image, keep=True)

        return self._obtain("pybase", image, build, parent=self.debian_rootfs, local=local)

    # -- 2. the operator/runner image from image/Dockerfile --

    def runner_inputs(self) -> list[tuple[str, bytes]]:
        """What ``image/Dockerfile`` reads from the context, minus what .dockerignore drops."""
        ignore = read_ignore(self.repo / ".dockerignore")
        parts: list[tuple[str, bytes]] = []
        for rel in (".dockerignore", "pyproject.toml", "README.md", "operator", "image"):
            parts.extend(tree_parts(self.repo / rel, self.repo, ignore))
        return parts

    def _runner_spec(self) -> BuiltImage:
        base_key = self._pybase_image().key
        recipe = ("recipe", f"{RECIPE_VERSION}/runner".encode())
        key = content_key([recipe, ("base", base_key.encode()), *self.runner_inputs()])
        return BuiltImage(
            f"localhost/migrategate:{key}", self.archive_path("migrategate", key), key
        )

    def runner_image(self) -> BuiltImage:
        """``localhost/migrategate:<key>``: ``buildah bud`` of image/Dockerfile on pybase."""
        image = self._runner_spec()

        def build(log: Path) -> None:
            self._bud(log, self._pybase_image().name, image.name)
            self._push(image, log)
            self._buildah(log, "rmi", image.name)

        return self._obtain("migrategate", image, build, parent=lambda: self.pybase(local=True))

    def _bud(self, log: Path, base: str, name: str) -> None:
        """The Dockerfile unchanged; only the base, the network and pip's CA differ.

        Without --layers, buildah keeps no intermediate image or container, even
        when a step fails (checked with buildah 1.28; it refuses --force-rm then).
        """
        self._buildah(
            log,
            "bud",
            "--pull=never",
            "--runtime",
            RUNTIME,
            "--network",
            "host",  # no CNI bridge, no iptables chains
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            *self._ca_volume(),
            "--tag",
            name,
            "--file",
            str(self.repo / "image" / "Dockerfile"),
            str(self.repo),
        )

    @staticmethod
    def _ca_volume() -> list[str]:
        """The host's CA bundle over the image's, read-only, for pip's TLS inside RUN.

        The way to PyPI may present certificates only the host trusts. Debian's pip
        (the one python3-venv puts in a venv) reads this very file, so PIP_CERT is
        not needed; ``bud --env`` would also have written it into the image.
        """
        if not Path(CA_BUNDLE).is_file():
            return []
        return ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]

    # -- 3. application images --

    def _app_base_image(self, stack: str) -> BuiltImage:
        parts = text_parts("requirements", STACKS[stack])
        base_key = self._pybase_image().key
        recipe = ("recipe", f"{RECIPE_VERSION}/appbase".encode())
        key = content_key([recipe, ("base", base_key.encode()), *parts])
        name = f"localhost/migrategate-appbase:{stack}-{key}"
        return BuiltImage(name, self.archive_path(f"appbase-{stack}", key), key)

    def app_base(self, stack: str, local: bool = False) -> BuiltImage:
        """``localhost/migrategate-appbase:<stack>-<key>``: pybase + a venv on PATH + user app."""
        image = self._app_base_image(stack)
        pybase = self._pybase_image()

        def build(log: Path) -> None:
            with self._container(log, pybase.name) as ctr:
                self._run_in(log, ctr, "python3", "-m", "venv", APP_VENV)
                pip = [f"{APP_VENV}/bin/pip", "install", "--no-cache-dir"]
                self._run_in(log, ctr, *pip, *STACKS[stack])
                # Every flavour's base has the user; only named-user images run as it.
                self._run_in(log, ctr, "useradd", "--create-home", "--shell", "/bin/sh", APP_USER)
                self._buildah(log, "config", "--env", f"PATH={APP_VENV}/bin:{SYSTEM_PATH}", ctr)
                self._commit(log, ctr, image, keep=True)

        parent = lambda: self.pybase(local=True)  # noqa: E731
        return self._obtain(f"appbase-{stack}", image, build, parent=parent, local=local)

    def _run_in(self, log: Path, ctr: str, *argv: str) -> None:
        """``buildah run`` on the host network (no CNI) with the host's CA bundle."""
        ca = self._ca_volume()
        self._buildah(log, "run", "--runtime", RUNTIME, "--network", "host", *ca, ctr, "--", *argv)

    def app_image(
        self, style: str, version: str, flavour: str = "root", files: ProjectFiles = None
    ) -> BuiltImage:
        """A sample project (``samples.materialize``) in ``/app``, the working directory.

        ``files`` (path under /app -> text) replaces files of the project, e.g. a
        SQLAlchemy 1.4 declarative base for the ``sqla14`` flavour (the samples use
        the 2.0 spelling). The image adds one small layer to its app base.
        """
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r}; one of {sorted(FLAVOURS)}")
        spec = FLAVOURS[flavour]
        with tempfile.TemporaryDirectory(prefix="migrategate-app-") as tmp:
            project = materialize_project(style, version, Path(tmp) / "app", files or {})
            image = self._app_spec(style, version, flavour, project)
            return self._obtain(
                f"app-{style}-{version}-{flavour}",
                image,
                lambda log: self._app_layer(log, project, spec, image),
                parent=lambda: self.app_base(spec.stack, local=True),
            )

    def _app_spec(self, style: str, version: str, flavour: str, project: Path) -> BuiltImage:
        spec = FLAVOURS[flavour]
        base_key = self._app_base_image(spec.stack).key
        key = content_key(
            [
                ("recipe", f"{RECIPE_VERSION}/app".encode()),
                ("base", base_key.encode()),
                ("user", (spec.user or "").encode()),
                *tree_parts(project, project),
            ]
        )
        kind = f"app-{style}-{version}-{flavour}"
        return BuiltImage(app_tag(style, version, flavour, key), self.archive_path(kind, key), key)

    def _app_layer(self, log: Path, project: Path, spec: Flavour, image: BuiltImage) -> None:
        """One layer on the app base: /app (owned by the USER, if any), WORKDIR, USER."""
        with self._container(log, self._app_base_image(spec.stack).name) as ctr:
            chown = ["--chown", f"{spec.user}:{spec.user}"] if spec.user else []
            self._buildah(log, "copy", *chown, ctr, str(project), "/app")
            config = ["--workingdir", "/app"] + (["--user", spec.user] if spec.user else [])
            self._buildah(log, "config", *config, ctr)
            self._commit(log, ctr, image, keep=False)

    # -- the busybox utility image --

    def _busybox_spec(self) -> BuiltImage:
        if not self.busybox_binary.is_file():
            raise BuildError(f"{self.busybox_binary} missing: {PACKAGES_HINT}")
        binary = ("busybox", self.busybox_binary.read_bytes())
        key = content_key([("recipe", f"{RECIPE_VERSION}/busybox".encode()), binary])
        return BuiltImage(f"localhost/busybox:{key}", self.archive_path("busybox", key), key)

    def busybox(self) -> BuiltImage:
        """``localhost/busybox:<key>``: the static busybox, its applet links, /tmp, passwd."""
        image = self._busybox_spec()
        binary = self.busybox_binary

        def build(log: Path) -> None:
            applets = self.run([str(binary), "--list-full"], log).split()
            with tempfile.TemporaryDirectory(prefix="migrategate-busybox-") as tmp:
                rootfs = Path(tmp) / "rootfs.tar"
                rootfs.write_bytes(busybox_rootfs(binary.read_bytes(), applets))
                with self._container(log, "scratch") as ctr:
                    self._buildah(log, "add", ctr, str(rootfs), "/")
                    self._buildah(log, "config", "--env", f"PATH={SYSTEM_PATH}", "--cmd", "sh", ctr)
                    self._commit(log, ctr, image, keep=False)

        return self._obtain("busybox", image, build)

    # -- pruning the cache --

    def current(self) -> list[BuiltImage]:
        """Every image the current inputs name (nothing is built): what ``prune`` keeps.

        App images are counted for every style, version and flavour, without ``files``.
        """
        images = [self._pybase_image(), self._runner_spec(), self._busybox_spec()]
        images += [self._app_base_image(stack) for stack in STACKS]
        with tempfile.TemporaryDirectory(prefix="migrategate-app-") as tmp:
            for style in samples.STYLES:
                for version in samples.IMAGE_VERSIONS:
                    project = materialize_project(style, version, Path(tmp) / style / version, {})
                    images += [self._app_spec(style, version, f, project) for f in FLAVOURS]
        return images

    def prune(self) -> list[str]:
        """Delete what no current input names: archives, rootfs tarballs, logs, parent images."""
        log = self.cache / "logs" / "prune.log"
        with self._locked():
            keep = self.current()
            keys = {image.key for image in keep} | {self._rootfs_key()}
            files = {image.archive for image in keep} | {self._rootfs_path()}
            stale = [p for p in self.cache.glob("*.tar") if p not in files]
            stale += [p for p in self.cache.glob("logs/*.log") if _stale_log(p, keys)]
            for path in stale:
                path.unlink()
            listed = self._buildah(log, "images", "--format", "{{.Name}}:{{.Tag}}").split()
            names = {image.name for image in keep}
            ours = [n for n in listed if n.startswith(OUR_REPOSITORIES) and n not in names]
            for name in ours:
                self._buildah(log, "rmi", name)
        return [p.name for p in stale] + ours


def _stale_log(path: Path, keys: set[str]) -> bool:
    """A build's log (``<kind>-<key>.log``) whose key is no longer current."""
    key = path.stem.rsplit("-", 1)[-1]
    return len(key) == 16 and all(c in "0123456789abcdef" for c in key) and key not in keys


def materialize_project(style: str, version: str, dest: Path, files: Mapping[str, str]) -> Path:
    """``samples.materialize`` plus overrides, world-readable (pods may run as any uid)."""
    samples.materialize(style, version, dest)
    for rel, text in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def busybox_rootfs(binary: bytes, applets: Iterable[str]) -> bytes:
    """A root filesystem tarball: busybox, absolute applet symlinks, /tmp and passwd.

    Built in memory with fixed owners and times, so it does not depend on the
    host's umask or ownership. nobody (65534) is there for runAsUser tests.
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        dirs = sorted(
            {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc"}
            | {a.rsplit("/", 1)[0] for a in applets}
        )
        for directory in dirs:
            _tar_add(tar, directory, tarfile.DIRTYPE, 0o755)
        _tar_add(tar, "tmp", tarfile.DIRTYPE, 0o1777)
        _tar_add(tar, "bin/busybox", tarfile.REGTYPE, 0o755, binary)
        for applet in applets:
            if applet != "bin/busybox":
                _tar_add(tar, applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox")
        passwd = (
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        )
        _tar_add(tar, "etc/passwd", tarfile.REGTYPE, 0o644, passwd.encode())
        _tar_add(tar, "etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    return out.getvalue()


def _tar_add(
    tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"", link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


# --- importing into the node's containerd -------------------------------------------------


def import_into_containerd(
    archive: Path,
    name: str,
    ctr_binary: Path | str,
    address: str,
    namespace: str = "k8s.io",
    *,
    pinned: bool = True,
    run: Runner = run_command,
    log: Path | None = None,
) -> str:
    """Import an OCI archive as exactly the image a pod spec names; return containerd's name.

    ``name`` is written as in the pod spec (``busybox``, ``localhost/migrategate:ab12``);
    CRI looks it up normalised (``docker.io/library/busybox:latest``), so that is the
    name given. ``--index-name`` names the archive's index (our archives carry no
    name of their own, so no second name appears). ``pinned`` adds CRI's pinned
    label: the kubelet's image GC never deletes it (nothing could pull it back).
    Layers are unpacked into the default snapshotter, ready for a container.
    """
    ref = normalize_reference(name)
    argv = [str(ctr_binary), "--address", address, "--namespace", namespace, "images", "import"]
    argv += ["--index-name", ref]
    if pinned:
        argv += ["--label", "io.cri-containerd.pinned=pinned"]
    started = time.monotonic()
    run([*argv, str(archive)], log or cache_dir() / "logs" / "ctr-import.log")
    say(f"imported {ref} in {time.monotonic() - started:.1f}s")
    return ref


# --- module-level shortcuts (the default cache, real commands) --------------------------------


def pybase() -> BuiltImage:
    return ImageBuilder().pybase()


def runner_image() -> BuiltImage:
    return ImageBuilder().runner_image()


def app_image(
    style: str, version: str, flavour: str = "root", files: ProjectFiles = None
) -> BuiltImage:
    return ImageBuilder().app_image(style, version, flavour, files)


def busybox() -> BuiltImage:
    return ImageBuilder().busybox()


# --- CLI ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubeharness.imagebuild", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("pybase", "runner", "busybox", "all"):
        sub.add_parser(command, help=f"build {command} (cached); print name and archive")
    sub.add_parser("prune", help="delete archives and images no current input names")
    app = sub.add_parser("app", help="build one sample application image")
    app.add_argument("style")
    app.add_argument("version")
    app.add_argument("--flavour", default="root", choices=sorted(FLAVOURS))
    imp = sub.add_parser(
        "import", help="ctr images import an archive under a pod spec's image name"
    )
    imp.add_argument("archive", type=Path)
    imp.add_argument("name")
    imp.add_argument("--ctr", required=True)
    imp.add_argument("--address", required=True)
    imp.add_argument("--namespace", default="k8s.io")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    builder = ImageBuilder()
    try:
        if args.command == "import":
            print(
                import_into_containerd(
                    args.archive, args.name, args.ctr, args.address, args.namespace
                )
            )
            return 0
        if args.command == "prune":
            removed = builder.prune()
            print("\n".join(removed) or "nothing to prune")
            return 0
        built = {
            "pybase": lambda: [builder.pybase()],
            "runner": lambda: [builder.runner_image()],
            "busybox": lambda: [builder.busybox()],
            "app": lambda: [builder.app_image(args.style, args.version, args.flavour)],
            "all": lambda: _all(builder),
        }[args.command]()
    except BuildError as err:
        print(f"imagebuild: {err}", file=sys.stderr)
        return 1
    for image in built:
        print(image.name, image.archive)
    return 0


def _all(builder: ImageBuilder) -> list[BuiltImage]:
    """Every image once: the bases, the runner, busybox and one app image per flavour."""
    images = [builder.pybase(), builder.runner_image(), builder.busybox()]
    images += [builder.app_image("seed004_ini_url", "v1", flavour) for flavour in FLAVOURS]
    return images


if __name__ == "__main__":
    raise SystemExit(main())
