#!/usr/bin/env bash
# Debian packages the real node and the image builds need: runc (the OCI
# runtime; crun refuses this machine's hybrid cgroups), the CNI plugins,
# buildah and mmdebstrap (images with no registry), iptables and conntrack
# (kube-proxy), busybox-static (the utility image). Installs only what is
# missing; needs root, as the node itself does.
set -euo pipefail
packages=(runc containernetworking-plugins buildah mmdebstrap iptables conntrack busybox-static iproute2 openssl util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "[system-deps] all present: ${packages[*]}"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "[system-deps] ERROR: missing ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "[system-deps] installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
