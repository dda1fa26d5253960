"""The cluster scenarios against an existing cluster instead of the local one.

Set ``MIGRATEGATE_KUBECONFIG`` and the ``control_plane``, ``node_images`` and ``pg``
fixtures (tests/cluster/conftest.py) come from here instead:

- ``MIGRATEGATE_KUBECONFIG``: a kubeconfig whose current context is a cluster
  the tests may change (they create namespaces, a CRD, ClusterRoles, and delete
  the namespace ``migrategate-system``). Its user authenticates with a client
  certificate or a token; exec plugins and ``insecure-skip-tls-verify`` are refused.
  Its CA (the system's bundle when it names none) is copied into ``ca_file``, which
  the tests' token kubeconfigs name. ``kubectl`` and ``helm`` come from ``PATH``.
- ``MIGRATEGATE_IMAGES``: a JSON file mapping ``runner`` and
  ``app/<style>/<version>/<flavour>`` to image names the cluster's nodes already
  have (tests/cluster/kind/images.py writes one).
- ``MIGRATEGATE_PG_ADMIN_URL``: ``postgresql://<superuser>:<password>@<host>:<port>``
  as the test process reaches the server (the database ``postgres`` is used). That
  user creates the roles ``app_user`` and ``app_special`` (or resets their
  passwords) and a database per test; those databases are dropped at the end.
- ``MIGRATEGATE_PG_POD_HOST``: ``host[:port]`` as pods reach the server, when it
  differs from the admin URL's.
- ``MIGRATEGATE_PG_STOP`` / ``MIGRATEGATE_PG_START``: commands that stop and
  start the server without changing its address, for the test that takes the
  database away. Without them that test skips.

Tests marked ``own_node`` (the harness's own tests, the demo) skip in this mode, and so
does a test that asks for an image with files of its own (``app(..., files=...)``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pgserver
import pytest
import yaml

from . import imagebuild
from .controlplane import run_kubectl

KUBECONFIG_ENV = "MIGRATEGATE_KUBECONFIG"
IMAGES_ENV = "MIGRATEGATE_IMAGES"
PG_ADMIN_URL_ENV = "MIGRATEGATE_PG_ADMIN_URL"
PG_POD_HOST_ENV = "MIGRATEGATE_PG_POD_HOST"
PG_STOP_ENV = "MIGRATEGATE_PG_STOP"
PG_START_ENV = "MIGRATEGATE_PG_START"

OWN_NODE_REASON = (
    f"{KUBECONFIG_ENV} is set: this test needs the local cluster's own node "
    "(its processes, cgroups, containerd or teardown), not an existing cluster"
)


class KubeconfigError(ValueError):
    """The kubeconfig cannot serve the tests; the message says why."""


def kubeconfig_path(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The existing cluster's kubeconfig, or None for the local cluster (the default)."""
    value = environ.get(KUBECONFIG_ENV, "")
    return Path(value).expanduser().resolve() if value else None


# ----------------------------------------------------------------------------- kubeconfig


@dataclass(frozen=True)
class Access:
    """How the current context of a kubeconfig reaches and authenticates to its API server."""

    server: str
    ca: bytes  # PEM: the kubeconfig's, or the system's bundle when it names none
    client_cert: bytes | None = None
    client_key: bytes | None = None
    token: str | None = None


def read_kubeconfig(path: Path) -> Access:
    """The current context's server, CA and credentials, embedded or in files (relative
    paths are relative to the kubeconfig, as kubectl reads them)."""
    config = yaml.safe_load(path.read_text()) or {}
    current = config.get("current-context")
    if not current:
        raise KubeconfigError(f"{path}: no current-context")
    context = _entry(config, "contexts", current, path)["context"]
    cluster = _entry(config, "clusters", context.get("cluster"), path)["cluster"]
    user = _entry(config, "users", context.get("user"), path).get("user") or {}
    if cluster.get("insecure-skip-tls-verify"):
        raise KubeconfigError(f"{path}: insecure-skip-tls-verify is not supported; give the CA")
    for unsupported in ("exec", "auth-provider", "username"):
        if user.get(unsupported):
            raise KubeconfigError(
                f"{path}: user {context.get('user')!r} authenticates with {unsupported}; "
                "the tests' watch client needs a client certificate or a token"
            )
    base = path.parent
    ca = _material(cluster, "certificate-authority", base) or system_ca_bundle()
    server = str(cluster["server"]).rstrip("/")
    cert = _material(user, "client-certificate", base)
    key = _material(user, "client-key", base)
    if cert and key:
        return Access(server, ca, client_cert=cert, client_key=key)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / Path(user["tokenFile"]).expanduser()).read_text().strip()
    if not token:
        raise KubeconfigError(f"{path}: user {context.get('user')!r} has no certificate or token")
    return Access(server, ca, token=token)


def _entry(config: dict[str, Any], kind: str, name: Any, path: Path) -> dict[str, Any]:
    for item in config.get(kind) or []:
        if item.get("name") == name:
            return dict(item)
    raise KubeconfigError(f"{path}: no {kind[:-1]} named {name!r}")


def _material(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64) or the file ``<key>`` names; None when neither is there."""
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return (base / Path(section[key]).expanduser()).read_bytes()
    return None


def system_ca_bundle() -> bytes:
    """The system's CA bundle, for a kubeconfig that names no CA (a publicly signed server)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    raise KubeconfigError("the kubeconfig names no CA and the system has no CA bundle")


def write_pki(access: Access, pki: Path) -> Path:
    """What kubeharness.kubeapi reads: ``ca.crt``, and ``admin.crt``/``admin.key`` or
    ``token``. Returns the CA file."""
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {
        "ca.crt": access.ca,
        "admin.crt": access.client_cert,
        "admin.key": access.client_key,
        "token": access.token.encode() if access.token else None,
    }
    for name, data in files.items():
        if data is not None:
            target = pki / name
            target.touch(mode=0o600)
            target.write_bytes(data)
    return pki / "ca.crt"


@dataclass
class ExternalCluster:
    """What the scenarios use of ``ControlPlane``, for a cluster someone else runs."""

    kubeconfig: Path
    workdir: Path  # holds pki/ (CA and credentials for gatewatch's client)
    server: str
    ca_file: Path  # a copy of the kubeconfig's CA, so token kubeconfigs can name it
    bin_dir: Path  # where kubectl was found; helm is looked up on PATH too

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG (PATH as it is)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run kubectl from PATH against this cluster and return its stdout."""
        return run_kubectl("kubectl", args, self.env, input, check)


@contextlib.contextmanager
def connected(kubeconfig: Path) -> Iterator[ExternalCluster]:
    """The cluster of ``kubeconfig``, checked to answer; skips when kubectl or helm is missing."""
    missing = [tool for tool in ("kubectl", "helm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{KUBECONFIG_ENV} is set but {' and '.join(missing)} is not on PATH")
    access = read_kubeconfig(kubeconfig)
    workdir = Path(tempfile.mkdtemp(prefix="mg-external-"))
    try:
        ca_file = write_pki(access, workdir / "pki")
        kubectl = Path(shutil.which("kubectl") or "kubectl")
        cluster = ExternalCluster(kubeconfig, workdir, access.server, ca_file, kubectl.parent)
        cluster.kubectl("get", "--raw", "/readyz")
        yield cluster
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- images


def app_key(style: str, version: str, flavour: str = "root") -> str:
    """The image map's key of a sample application image."""
    return f"app/{style}/{version}/{flavour}"


def parse_image_map(data: Any, source: str = "the image map") -> dict[str, str]:
    """Check an image map: ``runner``, optional ``busybox``, ``app/<style>/<version>/<flavour>``
    keys, each naming a non-empty image."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for key, value in data.items():
        parts = str(key).split("/")
        known = key in ("runner", "busybox") or (
            len(parts) == 4 and parts[0] == "app" and all(parts)
        )
        if not known:
            expected = "runner, busybox or app/<style>/<version>/<flavour>"
            raise ValueError(f"{source}: unknown key {key!r} ({expected})")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{source}: {key!r} must name an image")
    if "runner" not in data:
        raise ValueError(f"{source}: no 'runner' (the migrategate image)")
    return {str(k): str(v) for k, v in data.items()}


class MappedImages:
    """``NodeImages``' methods over images the cluster already has; nothing is built."""

    def __init__(self, images: Mapping[str, str], source: str) -> None:
        self.images = dict(images)
        self.source = source

    def _get(self, key: str) -> str:
        try:
            return self.images[key]
        except KeyError:
            raise LookupError(
                f"{key} is not in {self.source}; tests/cluster/kind/images.py lists what it builds"
            ) from None

    def runner(self) -> str:
        return self._get("runner")

    def busybox(self) -> str:
        return self._get("busybox")

    def app(
        self, style: str, version: str, flavour: str = "root", files: imagebuild.ProjectFiles = None
    ) -> str:
        if files:  # made for one test: the local harness builds it, no loader can foresee it
            pytest.skip(
                f"{KUBECONFIG_ENV} is set: this test needs an image with files of its own, "
                "which no image map holds"
            )
        return self._get(app_key(style, version, flavour))


def mapped_images(environ: Mapping[str, str] = os.environ) -> MappedImages:
    """The images ``MIGRATEGATE_IMAGES`` names; skips when it is not set."""
    path = environ.get(IMAGES_ENV, "")
    if not path:
        pytest.skip(f"{KUBECONFIG_ENV} is set but {IMAGES_ENV} (the image map) is not")
    return MappedImages(parse_image_map(json.loads(Path(path).read_text()), path), path)


# ----------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PgAddress:
    user: str
    password: str
    host: str
    port: int


def parse_admin_url(url: str) -> PgAddress:
    """``postgresql[+driver]://user:password@host[:port][/database]`` (percent-encoded)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith(("postgresql", "postgres")) or not parts.hostname:
        raise ValueError(f"{PG_ADMIN_URL_ENV}: expected postgresql://user:password@host:port")
    if parts.username is None or parts.password is None:
        raise ValueError(f"{PG_ADMIN_URL_ENV}: needs a user and a password")
    return PgAddress(
        unquote(parts.username), unquote(parts.password), parts.hostname, parts.port or 5432
    )


def parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


@dataclass
class ExternalPg(pgserver.PgServer):
    """A PostgreSQL server someone else runs, with ``PgServer``'s test-facing methods.

    ``host``/``port`` are where the test process reaches it; ``url()`` names
    ``pod_host``/``pod_port`` (what goes into Secrets), ``local_url()`` the former.
    """

    pod_host: str = ""
    pod_port: int = 0
    stop_command: str = ""
    start_command: str = ""
    created: list[str] = field(default_factory=list)

    @property
    def pod_address(self) -> tuple[str, int]:
        return self.pod_host, self.pod_port

    def create_database(self, name: str | None = None, owner: str = pgserver.APP_USER) -> str:
        created = super().create_database(name, owner)
        self.created.append(created)
        return created

    def init(self) -> None:
        raise RuntimeError("an external PostgreSQL is not initialised here")

    def stop(self) -> None:
        if not self.stop_command:
            pytest.skip(f"{PG_STOP_ENV} and {PG_START_ENV} are not set: cannot stop the database")
        subprocess.run(shlex.split(self.stop_command), check=True, capture_output=True)

    def start(self, timeout: float = 60.0) -> None:
        if not self.start_command:
            pytest.skip(f"{PG_START_ENV} is not set: cannot start the database")
        subprocess.run(shlex.split(self.start_command), check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL at {self.host}:{self.port} is not back")
            time.sleep(0.2)

    def destroy(self) -> None:
        """Drop the databases this session created; the server stays as it was."""
        for name in self.created:
            with contextlib.suppress(Exception):
                self.drop_database(name)
        self.created.clear()


def pg_from_env(base_dir: Path, environ: Mapping[str, str] = os.environ) -> ExternalPg:
    """The server the environment names; skips when ``MIGRATEGATE_PG_ADMIN_URL`` is not set."""
    url = environ.get(PG_ADMIN_URL_ENV, "")
    if not url:
        pytest.skip(f"{KUBECONFIG_ENV} is set but {PG_ADMIN_URL_ENV} is not")
    admin = parse_admin_url(url)
    pod_host, pod_port = parse_host_port(environ.get(PG_POD_HOST_ENV) or admin.host, admin.port)
    return ExternalPg(
        base_dir=base_dir,
        host=admin.host,
        port=admin.port,
        superuser=admin.user,
        superuser_password=admin.password,
        pod_host=pod_host,
        pod_port=pod_port,
        stop_command=environ.get(PG_STOP_ENV, ""),
        start_command=environ.get(PG_START_ENV, ""),
    )


@contextlib.contextmanager
def running_pg(base_dir: Path) -> Iterator[ExternalPg]:
    """The environment's server with the application roles; its test databases dropped after."""
    server = pg_from_env(base_dir)
    server.ensure_role(pgserver.APP_USER, pgserver.APP_PASSWORD)
    server.ensure_role(pgserver.SPECIAL_USER, pgserver.SPECIAL_PASSWORD)
    try:
        yield server
    finally:
        server.destroy()
