"""A local control plane: etcd, kube-apiserver and kube-controller-manager.

Everything lives in one temp dir: certificates (made with the openssl CLI),
etcd data, logs, the admin kubeconfig and the process ledger. ``start`` returns
a running :class:`ControlPlane`; ``stop`` kills every process group and checks
that none survived.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import binaries
from .procs import Ledger, kill_group, popen

SERVICE_CIDR = "10.0.0.0/24"
# The controllers the operator relies on. root-ca-cert-publisher creates the
# kube-root-ca.crt ConfigMap that every pod's service-account volume projects;
# ttl-after-finished honours Job.spec.ttlSecondsAfterFinished.
CONTROLLERS = (
    "job",
    "replicaset",
    "deployment",
    "garbagecollector",
    "namespace",
    "serviceaccount",
    "serviceaccount-token",
    "root-ca-cert-publisher",
    "ttl-after-finished",
)


@dataclass
class ControlPlane:
    """A running control plane. ``env`` is what a kubectl/helm subprocess needs."""

    workdir: Path
    bin_dir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    ledger: Ledger
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, with the built kubectl/helm first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '')}"
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run the built kubectl against this cluster and return its stdout."""
        done = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def log(self, name: str) -> str:
        """The output of one component (etcd, kube-apiserver, ...), for debugging."""
        return (self.workdir / f"{name}.log").read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ec_key(cwd: Path, name: str) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name, cwd=cwd)


def _signed_cert(cwd: Path, name: str, subject: str, ext: str) -> None:
    """An EC key ``name.key`` and a cert ``name.crt`` signed by ca.key."""
    _ec_key(cwd, f"{name}.key")
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=cwd,
    )


def make_certs(pki: Path) -> None:
    """CA, apiserver serving cert, admin client cert (system:masters), SA key."""
    pki.mkdir(parents=True, exist_ok=True)
    _ec_key(pki, "ca.key")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=migrategate-test-ca",
        "-days",
        "3650",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    sans = "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    sans += "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    _signed_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n",
    )
    _signed_cert(pki, "admin", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth\n")
    # One key both verifies (apiserver) and signs (apiserver, controller manager) SA tokens.
    _ec_key(pki, "sa.key")
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""
    )


def _etcd_args(bin_dir: Path, workdir: Path, client: int, peer: int) -> list[str]:
    return [
        str(bin_dir / "etcd"),
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=default=http://127.0.0.1:{peer}",
        "--unsafe-no-fsync",  # throwaway data: fsync only costs time
        "--log-level=warn",
    ]


def _apiserver_args(bin_dir: Path, pki: Path, port: int, etcd: int) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{etcd}",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _controller_manager_args(bin_dir: Path, workdir: Path, pki: Path, port: int) -> list[str]:
    kubeconfig = workdir / "kubeconfig"
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=false",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={workdir / 'kcm-certs'}",
        "--profiling=false",
    ]


def _ssl_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def wait_ready(cp: ControlPlane, path: str = "/readyz", timeout: float = 90.0) -> None:
    """Poll ``path`` until it answers 200; fail early if a component died."""
    ctx = _ssl_context(cp.workdir / "pki")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for name, p in cp.procs.items():
            if p.poll() is not None:
                tail = cp.log(name)[-2000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(cp.server + path, context=ctx, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise TimeoutError(f"{cp.server}{path} not ready after {timeout}s: {last}")


def start(workdir: Path, bin_dir: Path | None = None) -> ControlPlane:
    """Start etcd, the apiserver and the controller manager; wait for /readyz."""
    bin_dir = bin_dir or binaries.bin_dir()
    pki = workdir / "pki"
    make_certs(pki)
    api_port = free_port()
    cp = ControlPlane(
        workdir=workdir,
        bin_dir=bin_dir,
        server=f"https://127.0.0.1:{api_port}",
        kubeconfig=workdir / "kubeconfig",
        ca_file=pki / "ca.crt",
        ledger=Ledger(workdir / "pids"),
    )
    write_kubeconfig(cp.kubeconfig, cp.server, pki)
    try:
        etcd_port = free_port()
        _spawn(cp, "etcd", _etcd_args(bin_dir, workdir, etcd_port, free_port()))
        _spawn(cp, "kube-apiserver", _apiserver_args(bin_dir, pki, api_port, etcd_port))
        wait_ready(cp)
        kcm = _controller_manager_args(bin_dir, workdir, pki, free_port())
        _spawn(cp, "kube-controller-manager", kcm)
    except BaseException:
        stop(cp)
        raise
    return cp


def _spawn(cp: ControlPlane, name: str, argv: list[str]) -> None:
    cp.procs[name] = popen(argv, cp.ledger, cp.workdir / f"{name}.log", cwd=cp.workdir)


def stop(cp: ControlPlane) -> list[int]:
    """Kill every process group we started (newest first); return any survivors."""
    for p in reversed(cp.procs.values()):
        kill_group(p.pid, grace=5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=1)
    return cp.ledger.survivors()


@contextlib.contextmanager
def running(workdir: Path, bin_dir: Path | None = None) -> Iterator[ControlPlane]:
    cp = start(workdir, bin_dir)
    try:
        yield cp
    finally:
        survivors = stop(cp)
        if survivors:
            raise RuntimeError(f"processes survived the control plane teardown: {survivors}")
