"""The pod network: one Linux bridge local to this machine, and nothing beyond it.

The harness makes the bridge itself and gives it the gateway address, so the
API server, the kubelet and PostgreSQL can listen there before any pod exists.
The CNI bridge plugin then only attaches pods (``isGateway: false``, so it
neither takes the address nor turns on IP forwarding), and ``ipMasq: false``
means no NAT. Pods get a route to their subnet and to the service range only:
no default route, so nothing leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Candidate pod subnets; the first one that no interface of this network
# namespace uses is taken.
POD_SUBNETS = [ipaddress.ip_network(f"10.234.{n}.0/24") for n in range(10, 250)]
CNI_BIN_DIRS = ["/usr/lib/cni", "/opt/cni/bin"]  # Debian's containernetworking-plugins, upstream's


@dataclass(frozen=True)
class PodNetwork:
    bridge: str
    subnet: ipaddress.IPv4Network
    service_cidr: str

    @property
    def gateway(self) -> str:
        """The bridge's own address: where pods reach the node and PostgreSQL."""
        return str(self.subnet.network_address + 1)


# A command prefix that runs a second cluster (the demo, a benchmark, the teardown test's
# child) in its own network, PID and mount namespaces: two kube-proxies in one network
# namespace rewrite each other's rules, and a teardown sweeps every KUBE-* chain in its
# own. When the namespaces' first process dies, the kernel ends every process in them.
ISOLATED = ["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = json.loads(_ip("-j", "-4", "addr", "show").stdout)
    return [
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
        for link in out
        for a in link.get("addr_info", [])
    ]


def create(bridge: str, service_cidr: str) -> PodNetwork:
    """Make the bridge with the first free pod subnet's gateway address, and bring it up."""
    used = _used_networks()
    subnet = next(s for s in POD_SUBNETS if not any(s.overlaps(u) for u in used))
    net = PodNetwork(bridge=bridge, subnet=subnet, service_cidr=service_cidr)
    _ip("link", "set", "lo", "up")  # down in a fresh network namespace (the teardown test's)
    _ip("link", "add", bridge, "type", "bridge")
    try:
        _ip("addr", "add", f"{net.gateway}/{subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
    except subprocess.CalledProcessError:
        delete(bridge)
        raise
    return net


def delete(bridge: str) -> None:
    """Remove the bridge (its pods' veth ends went with their network namespaces)."""
    _ip("link", "del", bridge, check=False)


def bridge_exists(bridge: str) -> bool:
    return _ip("link", "show", bridge, check=False).returncode == 0


def write_cni_config(net: PodNetwork, conf_dir: Path, ipam_dir: Path) -> Path:
    """The CNI conflist containerd reads: bridge + host-local IPAM, no NAT, no default route."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "migrategate",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": str(net.subnet), "gateway": net.gateway}]],
                    "routes": [{"dst": net.service_cidr, "gw": net.gateway}],
                },
            }
        ],
    }
    path = conf_dir / "10-migrategate.conflist"
    path.write_text(json.dumps(conflist, indent=2))
    return path


def cni_bin_dirs() -> list[str]:
    return [d for d in CNI_BIN_DIRS if (Path(d) / "bridge").exists()]


# --- iptables ---------------------------------------------------------------------
# kube-proxy (and the kubelet) keep their rules in chains named KUBE-*. kube-proxy's
# own --cleanup removes most; this sweep removes whatever is left in this network
# namespace, so a teardown can promise that none remains.


def kube_chains(table: str, iptables: str = "iptables") -> list[str]:
    out = subprocess.run([iptables, "-t", table, "-S"], capture_output=True, text=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("-N KUBE-")]


def sweep_kube_chains() -> None:
    """Delete every rule jumping to a KUBE-* chain, then the chains themselves."""
    for iptables in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            rules = subprocess.run(
                [iptables, "-t", table, "-S"], capture_output=True, text=True
            ).stdout.splitlines()
            for rule in rules:
                if (
                    rule.startswith("-A ")
                    and " -j KUBE-" in rule
                    and not rule.startswith("-A KUBE-")
                ):
                    args = shlex.split(rule)[1:]
                    subprocess.run([iptables, "-t", table, "-D", *args], capture_output=True)
            chains = kube_chains(table, iptables)
            for chain in chains:
                subprocess.run([iptables, "-t", table, "-F", chain], capture_output=True)
            for chain in chains:
                subprocess.run([iptables, "-t", table, "-X", chain], capture_output=True)
