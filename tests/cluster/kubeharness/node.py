"""A real node: containerd with runc and the bridge CNI plugin, the kubelet and kube-proxy.

Everything it makes is named after one id and lives under the cluster's work
dir, a cgroup ``/migrategate-<id>`` in every hierarchy, and the bridge
``mg<id>``, so that :func:`clean_up` can remove exactly that and prove nothing
is left. Facts about this machine that shape the settings are in
``shared/notes/real-node.md``:

- cgroups are hybrid v1, there is no systemd: ``cgroupDriver: cgroupfs``,
  ``failCgroupV1: false``, runc (crun refuses hybrid cgroups);
- CAP_SYS_RESOURCE is missing, so no negative ``oom_score_adj`` anywhere:
  the kubelet's ``oomScoreAdj: 0`` and containerd's ``restrict_oom_score_adj``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import network
from .network import PodNetwork

NODE_NAME = "migrategate-node"
CGROUP_FS = Path("/sys/fs/cgroup")
PAUSE_IMAGE = "localhost/migrategate/pause:{version}"


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its state; all under the cluster's work dir (``under``)."""

    workdir: Path
    containerd_socket: Path
    containerd_config: Path
    kubelet_dir: Path
    cni_conf_dir: Path
    cni_ipam_dir: Path

    @classmethod
    def under(cls, workdir: Path) -> NodePaths:
        containerd, cni = workdir / "containerd", workdir / "cni"
        return cls(
            workdir=workdir,
            containerd_socket=containerd / "containerd.sock",
            containerd_config=containerd / "config.toml",
            kubelet_dir=workdir / "kubelet",
            cni_conf_dir=cni / "net.d",
            cni_ipam_dir=cni / "ipam",
        )


def cgroup_name(node_id: str) -> str:
    return f"migrategate-{node_id}"


# --- configuration (pure) ------------------------------------------------------------


def containerd_config(paths: NodePaths, pause_image: str) -> str:
    """containerd 2.x config (version 3): state under the work dir, runc on cgroupfs."""
    base = paths.workdir / "containerd"
    cni_bins = json.dumps(network.cni_bin_dirs())
    unused = [
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.blockfile",
        "io.containerd.snapshotter.v1.erofs",
        "io.containerd.nri.v1.nri",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]
    return f"""version = 3
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = {json.dumps(unused)}

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause_image}"

[plugins."io.containerd.cri.v1.runtime"]
  # The VM lacks CAP_SYS_RESOURCE: runc cannot write a negative oom_score_adj.
  restrict_oom_score_adj = true
  # Network namespaces under the state dir, so teardown finds them with the rest.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "/usr/bin/runc"
      Root = "{base / "runc"}"
      SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = {cni_bins}
    conf_dir = "{paths.cni_conf_dir}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
"""


def kubelet_config(
    paths: NodePaths, net: PodNetwork, pki: Path, cgroup_root: str, port: int, healthz: int
) -> dict[str, object]:
    """KubeletConfiguration for this machine: cgroup v1 via cgroupfs, no OOM score games."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root}",
        "oomScoreAdj": 0,
        "protectKernelDefaults": False,
        "address": net.gateway,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "imageServiceEndpoint": f"unix://{paths.containerd_socket}",
        "podLogsDir": str(paths.workdir / "pod-logs"),
        # No host resolv.conf in pods: nothing in them should look names up outside.
        "resolvConf": "",
        # A test machine's disk may be fuller than a node's defaults allow.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        # Status reaches the API server quickly; the gate benchmark measures it.
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "maxPods": 250,
    }


def kube_proxy_config(net: PodNetwork, kubeconfig: Path, healthz: int, metrics: int) -> dict:
    """iptables mode; conntrack sysctls left as they are (maxPerCore 0)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": str(net.subnet),
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"localhostNodePorts": False},
        "nodePortAddresses": [f"{net.gateway}/32"],
    }


# --- cgroups ---------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, the unified one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] in ("cgroup", "cgroup2"):
            found.append(Path(line.split()[4]))
    return sorted(set(found))


def make_cgroup_root(name: str) -> None:
    """``/name`` in every hierarchy; cpuset needs its cpus and mems filled before use."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((hierarchy / knob).read_text())


def cgroup_pids(name: str) -> list[int]:
    """Pids in ``/name`` or below, in any hierarchy."""
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        for _ in range(5):  # pod cgroups come and go: a walk that lost one starts again
            try:
                for procs in (hierarchy / name).rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids.update(int(p) for p in procs.read_text().split())
                break
            except OSError:
                continue
    return sorted(pids)


def remove_cgroup_root(name: str) -> list[Path]:
    """rmdir ``/name`` and everything below it, deepest first; return what could not go."""
    left = []
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / name
        if not root.exists():
            continue
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, root]:
            try:
                d.rmdir()
            except OSError:
                left.append(d)
    return left


# --- processes and mounts ---------------------------------------------------------------


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def shim_pids(containerd_socket: Path) -> list[int]:
    """containerd shims serving our containerd (they leave its process group on purpose)."""
    found = []
    needle = str(containerd_socket).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            found.append(int(entry))
    return found


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest (most recently listed) first."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return list(reversed(points))


def unmount_all(root: Path) -> list[str]:
    """Lazily unmount everything under ``root``; return what is still mounted."""
    for _ in range(3):  # a mount may hide another one beneath it
        for point in mounts_under(root):
            subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts_under(root)


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.05)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
