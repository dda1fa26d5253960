"""A local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
one real node (containerd + runc, kubelet, kube-proxy; see node.py).

Everything lives in one temp dir: certificates (made with the openssl CLI),
etcd data, the node's state, logs, kubeconfigs and the process ledger. The API
server listens on the pod bridge's gateway address, so pods reach it through
kube-proxy as they would on any cluster. ``start`` returns a running
:class:`ControlPlane`; ``stop`` kills every process, removes the node's mounts,
cgroups, bridge and iptables chains, and reports whatever survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import binaries, network, node, oci
from .network import PodNetwork
from .procs import Ledger, kill_group, popen

SERVICE_CIDR = "10.0.0.0/24"
# The controllers the operator relies on. root-ca-cert-publisher creates the
# kube-root-ca.crt ConfigMap that every pod's service-account volume projects;
# ttl-after-finished honours Job.spec.ttlSecondsAfterFinished; node-lifecycle
# lifts the not-ready taint a kubelet registers with; pod-garbage-collector
# deletes pods orphaned by a node.
CONTROLLERS = (
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
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
    net: PodNetwork
    node_id: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def node_paths(self) -> node.NodePaths:
        return node.NodePaths.under(self.workdir)

    def ctr(self, *args: str) -> str:
        """containerd's own CLI on this node, in the kubelet's (k8s.io) namespace."""
        sock = str(self.node_paths.containerd_socket)
        argv = [str(self.bin_dir / "ctr"), "-a", sock, "-n", "k8s.io", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def import_image(self, archive: Path) -> None:
        """Load an OCI archive into the node, as if it had been pulled."""
        self.ctr("images", "import", "--local", str(archive))

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, with the built kubectl/helm first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '')}"
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run the built kubectl against this cluster and return its stdout."""
        return run_kubectl(str(self.bin_dir / "kubectl"), args, self.env, input, check)

    def log(self, name: str) -> str:
        """The output of one component (etcd, kube-apiserver, ...), for debugging."""
        return (self.workdir / f"{name}.log").read_text(errors="replace")


def run_kubectl(
    kubectl: str, args: Sequence[str], env: Mapping[str, str], input: str | None, check: bool
) -> str:
    """``kubectl args`` with ``env`` (and ``input`` on stdin); its stdout. With ``check``,
    a failure raises RuntimeError with its stderr."""
    done = subprocess.run(
        [kubectl, *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


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


# Client identities, one kubeconfig each: name -> certificate subject.
IDENTITIES = {
    "admin": "/O=system:masters/CN=admin",
    "kubelet": f"/O=system:nodes/CN=system:node:{node.NODE_NAME}",
    "kube-proxy": "/CN=system:kube-proxy",
    "kube-scheduler": "/CN=system:kube-scheduler",
    # The API server's client identity towards the kubelet (logs, exec).
    "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
}


def make_certs(pki: Path, gateway: str) -> None:
    """CA, serving certs (API server, kubelet), client certs of IDENTITIES, SA key."""
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
    sans = f"IP:127.0.0.1,IP:10.0.0.1,IP:{gateway},DNS:localhost,DNS:kubernetes,"
    sans += "DNS:kubernetes.default,"
    sans += "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    _signed_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n",
    )
    for name, subject in IDENTITIES.items():
        _signed_cert(pki, name, subject, "extendedKeyUsage=clientAuth\n")
    _signed_cert(
        pki,
        "kubelet-serving",
        f"/CN={node.NODE_NAME}",
        f"subjectAltName=IP:{gateway},DNS:{node.NODE_NAME}\nextendedKeyUsage=serverAuth\n",
    )
    # One key both verifies (apiserver) and signs (apiserver, controller manager) SA tokens.
    _ec_key(pki, "sa.key")
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str = "admin") -> None:
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
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
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


def _apiserver_args(bin_dir: Path, pki: Path, port: int, etcd: int, address: str) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{etcd}",
        f"--secure-port={port}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _scheduler_args(bin_dir: Path, workdir: Path, port: int) -> list[str]:
    kubeconfig = workdir / "kube-scheduler.kubeconfig"
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
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
    """Start the control plane and the node; return once the node is Ready."""
    bin_dir = bin_dir or binaries.bin_dir()
    node_id = secrets.token_hex(3)
    workdir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(workdir / "pids")
    net = network.create(f"mg{node_id}", SERVICE_CIDR)  # the last step that can fail alone
    pki = workdir / "pki"
    api_port = free_port()
    cp = ControlPlane(
        workdir=workdir,
        bin_dir=bin_dir,
        server=f"https://{net.gateway}:{api_port}",
        kubeconfig=workdir / "kubeconfig",
        ca_file=pki / "ca.crt",
        ledger=ledger,
        net=net,
        node_id=node_id,
    )
    try:
        make_certs(pki, net.gateway)
        for user in IDENTITIES:
            name = "kubeconfig" if user == "admin" else f"{user}.kubeconfig"
            write_kubeconfig(workdir / name, cp.server, pki, user)
        etcd_port = free_port()
        _spawn(cp, "etcd", _etcd_args(bin_dir, workdir, etcd_port, free_port()))
        api = _apiserver_args(bin_dir, pki, api_port, etcd_port, net.gateway)
        _spawn(cp, "kube-apiserver", api)
        wait_ready(cp)
        _spawn(
            cp,
            "kube-controller-manager",
            _controller_manager_args(bin_dir, workdir, pki, free_port()),
        )
        _spawn(cp, "kube-scheduler", _scheduler_args(bin_dir, workdir, free_port()))
        start_node(cp)
    except BaseException:
        stop(cp)
        raise
    return cp


def start_node(cp: ControlPlane) -> None:
    """containerd (with the pause image imported), then the kubelet and kube-proxy."""
    paths, pki = cp.node_paths, cp.workdir / "pki"
    pause = node.PAUSE_IMAGE.format(version=binaries.versions()["KUBERNETES_VERSION"])
    paths.containerd_config.parent.mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(node.containerd_config(paths, pause))
    network.write_cni_config(cp.net, paths.cni_conf_dir, paths.cni_ipam_dir)
    _spawn(
        cp, "containerd", [str(cp.bin_dir / "containerd"), "--config", str(paths.containerd_config)]
    )
    wait_for(lambda: cp.ctr("version"), "containerd", cp)
    archive = oci.write_archive(
        cp.workdir / "pause.tar", pause, {"/pause": cp.bin_dir / "pause"}, ["/pause"]
    )
    cp.import_image(archive)

    cgroup = node.cgroup_name(cp.node_id)
    node.make_cgroup_root(cgroup)
    config = node.kubelet_config(paths, cp.net, pki, cgroup, free_port(), free_port())
    (cp.workdir / "kubelet.yaml").write_text(json.dumps(config, indent=2))
    _spawn(cp, "kubelet", [
        str(cp.bin_dir / "kubelet"),
        f"--config={cp.workdir / 'kubelet.yaml'}",
        f"--kubeconfig={cp.workdir / 'kubelet.kubeconfig'}",
        f"--root-dir={paths.kubelet_dir}",
        f"--hostname-override={node.NODE_NAME}",
        f"--node-ip={cp.net.gateway}",
    ])  # fmt: skip
    proxy = node.kube_proxy_config(
        cp.net, cp.workdir / "kube-proxy.kubeconfig", free_port(), free_port()
    )
    (cp.workdir / "kube-proxy.yaml").write_text(json.dumps(proxy, indent=2))
    _spawn(
        cp,
        "kube-proxy",
        [str(cp.bin_dir / "kube-proxy"), f"--config={cp.workdir / 'kube-proxy.yaml'}"],
    )
    wait_for(lambda: _node_ready(cp), "the node to be Ready", cp, timeout=120)


def _node_ready(cp: ControlPlane) -> None:
    out = cp.kubectl("get", "node", node.NODE_NAME, "-o", "json")
    conditions = {c["type"]: c["status"] for c in json.loads(out)["status"].get("conditions", [])}
    assert conditions.get("Ready") == "True", conditions


def wait_for(check, what: str, cp: ControlPlane, timeout: float = 60) -> None:
    """Call ``check`` until it stops raising; fail early, with its log, if a process died."""
    deadline = time.monotonic() + timeout
    while True:
        for name, p in cp.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{cp.log(name)[-3000:]}")
        try:
            check()
            return
        except Exception as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waiting for {what}: {e}") from e
        time.sleep(0.2)


def _spawn(cp: ControlPlane, name: str, argv: list[str]) -> None:
    cp.procs[name] = popen(argv, cp.ledger, cp.workdir / f"{name}.log", cwd=cp.workdir)


def stop(cp: ControlPlane) -> list[str]:
    """Stop everything and clean the node up; return what was left behind (empty is good)."""
    kube_proxy = cp.procs.get("kube-proxy")
    for name in ("kube-proxy", "kubelet"):
        if name in cp.procs:
            kill_group(cp.procs[name].pid, grace=5.0)
    cgroup = node.cgroup_name(cp.node_id)
    node.kill_pids(node.cgroup_pids(cgroup))  # every container, sandboxes included
    shims = node.shim_pids(cp.node_paths.containerd_socket)
    node.kill_pids(shims)
    left = [f"process {p}" for p in node.wait_gone(shims + node.cgroup_pids(cgroup))]
    for p in reversed(cp.procs.values()):
        kill_group(p.pid, grace=5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=1)
    if kube_proxy is not None:  # its own clean-up of the rules it wrote, then a sweep
        subprocess.run(
            [
                str(cp.bin_dir / "kube-proxy"),
                "--cleanup",
                f"--config={cp.workdir / 'kube-proxy.yaml'}",
            ],
            capture_output=True,
            timeout=60,
        )
    network.sweep_kube_chains()
    network.delete(cp.net.bridge)
    left += [f"mount {m}" for m in node.unmount_all(cp.workdir)]
    left += [f"cgroup {c}" for c in node.remove_cgroup_root(cgroup)]
    left += [f"process {p}" for p in cp.ledger.survivors()]
    if network.bridge_exists(cp.net.bridge):
        left.append(f"bridge {cp.net.bridge}")
    left += [
        f"iptables chain {c}" for c in network.kube_chains("nat") + network.kube_chains("filter")
    ]
    return left


@contextlib.contextmanager
def running(workdir: Path, bin_dir: Path | None = None) -> Iterator[ControlPlane]:
    cp = start(workdir, bin_dir)
    try:
        yield cp
    finally:
        left = stop(cp)
        if left:
            raise RuntimeError(f"the cluster's teardown left behind: {', '.join(left)}")
