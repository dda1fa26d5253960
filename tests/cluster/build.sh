#!/usr/bin/env bash
# Build the local cluster for the cluster tests from Go modules: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, the node (kubelet,
# kube-proxy, containerd and its runc shim, the pause binary from Kubernetes'
# own pause.c), kubectl (same version as the server, to avoid skew warnings)
# and helm, into
#   ~/.cache/migrategate/bin/<key>/   (key = all pinned versions)
# Idempotent: a no-op when every binary is already there. Go's module and build
# caches are left in place, so a rebuild after a version bump is cheap.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_containerd-${CONTAINERD_VERSION}"
cache="${MIGRATEGATE_CACHE:-$HOME/.cache/migrategate}"
bin="$cache/bin/$key"
src="$cache/src/$key"
kube_binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
containerd_binaries=(containerd containerd-shim-runc-v2 ctr)
binaries=(etcd "${kube_binaries[@]}" pause "${containerd_binaries[@]}" helm)

log() { printf '[cluster-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }
# Go or the proxy missing: outside CI the cluster tests then skip (saying why),
# so `make test` still runs the rest; under CI=true it is an error.
refuse() {
  if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then die "$*"; fi
  log "REFUSING: $* The cluster tests will be skipped."
  exit 0
}

have() {
  local b
  for b in "$@"; do [[ -x "$bin/$b" ]] || return 1; done
}

if have "${binaries[@]}"; then
  log "cached: $bin"
  exit 0
fi

command -v go >/dev/null || refuse "'go' is not on PATH; install Go >= 1.26 (the pinned Kubernetes needs it)."

# Never let Go download a newer toolchain behind our back: the pins are chosen
# so the installed Go satisfies every go.mod.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

proxy="$(go env GOPROXY)"
[[ "$proxy" == off ]] && refuse "GOPROXY=off: the build needs the Go module proxy."
log "go: $(go version | cut -d' ' -f3), GOPROXY=$proxy"
if ! go list -m -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null 2>&1; then
  refuse "cannot reach the Go module proxy ($proxy) for k8s.io/kubernetes@${KUBERNETES_VERSION}."
fi

# The checksum database is often unreachable when only the proxy is allowed.
# Then module hashes can't be checked against sum.golang.org; these helper
# modules are build-only, so fall back to GOSUMDB=off and say so.
sumdb="$(go env GOSUMDB)"
if [[ "$sumdb" != off ]] && ! curl -fsS -m 10 -o /dev/null "https://${sumdb%% *}/latest" 2>/dev/null; then
  log "WARNING: checksum database ${sumdb} unreachable; building with GOSUMDB=off"
  export GOSUMDB=off
fi

mkdir -p "$bin" "$src"
started=$SECONDS

# go.sum of each helper module is kept in the repo (tests/cluster/gosum/), so
# module hashes are pinned even with GOSUMDB=off: a changed module fails the
# build with a checksum mismatch instead of being used.
seed_gosum() {
  local tool="$1" dir="$2"
  [[ -f "$here/gosum/$tool.sum" ]] && cp "$here/gosum/$tool.sum" "$dir/go.sum"
  return 0
}
check_gosum() {
  local tool="$1" dir="$2"
  if ! cmp -s "$dir/go.sum" "$here/gosum/$tool.sum"; then
    log "note: new go.sum entries for $tool (after a version bump?): cp $dir/go.sum $here/gosum/$tool.sum"
  fi
}

# --- Kubernetes -------------------------------------------------------------
# k8s.io/kubernetes requires its staging modules at v0.0.0 with ./staging
# replaces. A helper module requires it and replaces each staging module with
# its published v0.X.Y; the list is read from that version's own go.mod.
build_kubernetes() {
  local dir="$src/kubernetes" minor pub gomod
  minor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
  pub="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  log "kubernetes ${KUBERNETES_VERSION}: resolving staging modules"
  gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  {
    echo "module migrategate.local/build/kubernetes"
    echo
    echo "go $(go mod edit -json "$gomod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])')"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo
    go mod edit -json "$gomod" | python3 -c '
import json, sys
pub = sys.argv[1]
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        old = r["Old"]["Path"]
        print("replace", old, "=>", old, pub)
' "$pub"
  } >"$dir/go.mod"
  seed_gosum kubernetes "$dir"
  log "kubernetes: $(grep -c '^replace' "$dir/go.mod") staging replaces; downloading modules"
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version"
  local ld="-s -w"
  for p in "$v" "$c"; do
    ld+=" -X $p.gitVersion=${KUBERNETES_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor}"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "kubernetes: compiling ${kube_binaries[*]} (the long step)"
  (cd "$dir" && go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$bin/" \
    "${kube_binaries[@]/#/k8s.io/kubernetes/cmd/}")
  check_gosum kubernetes "$dir"
}

# --- pause --------------------------------------------------------------------
# The pod sandbox's process, compiled from the pinned Kubernetes module's own
# pause.c; images.py wraps it as the sandbox image (no registry to pull from).
build_pause() {
  local moddir
  moddir="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  command -v gcc >/dev/null || die "gcc is needed for the pause binary (apt-get install gcc libc6-dev)"
  log "pause: gcc -Os -static build/pause/linux/pause.c"
  gcc -Os -static -Wall -Werror -DVERSION="${KUBERNETES_VERSION}" \
    -o "$bin/pause" "$moddir/build/pause/linux/pause.c"
}

# --- containerd -----------------------------------------------------------------
# containerd 2.x: Kubernetes 1.36 supports no 1.x. Its go.mod has no replace
# directives; the cgo-only snapshotters are left out as its static build does.
build_containerd() {
  local dir="$src/containerd"
  mkdir -p "$dir"
  printf 'module migrategate.local/build/containerd\n\ngo 1.26.0\n\nrequire github.com/containerd/containerd/v2 %s\n' \
    "$CONTAINERD_VERSION" >"$dir/go.mod"
  seed_gosum containerd "$dir"
  local v="github.com/containerd/containerd/v2/version"
  log "containerd ${CONTAINERD_VERSION}: compiling ${containerd_binaries[*]}"
  (cd "$dir" && go build -trimpath -tags "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" \
    -ldflags "-s -w -X $v.Version=${CONTAINERD_VERSION} -X $v.Package=github.com/containerd/containerd/v2" \
    -o "$bin/" "${containerd_binaries[@]/#/github.com/containerd/containerd/v2/cmd/}")
  check_gosum containerd "$dir"
}

# --- etcd ---------------------------------------------------------------------
# `go install go.etcd.io/etcd/server/v3@...` refuses because of its replace
# directives; as a dependency of a helper module they are ignored.
build_etcd() {
  local dir="$src/etcd"
  mkdir -p "$dir"
  printf 'module migrategate.local/build/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$dir/go.mod"
  seed_gosum etcd "$dir"
  log "etcd ${ETCD_VERSION}: compiling"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  check_gosum etcd "$dir"
}

# --- helm ---------------------------------------------------------------------
build_helm() {
  log "helm ${HELM_VERSION}: compiling"
  local dir="$src/helm"
  mkdir -p "$dir"
  printf 'module migrategate.local/build/helm\n\ngo 1.26.0\n\nrequire helm.sh/helm/v4 %s\n' \
    "$HELM_VERSION" >"$dir/go.mod"
  seed_gosum helm "$dir"
  local v="helm.sh/helm/v4/internal/version"
  (cd "$dir" && go build -trimpath \
    -ldflags "-s -w -X $v.version=${HELM_VERSION} -X $v.gitTreeState=clean" \
    -o "$bin/helm" helm.sh/helm/v4/cmd/helm)
  check_gosum helm "$dir"
}

have pause || build_pause
have "${containerd_binaries[@]}" || build_containerd
have "${kube_binaries[@]}" || build_kubernetes
[[ -x "$bin/etcd" ]] || build_etcd
[[ -x "$bin/helm" ]] || build_helm

have "${binaries[@]}" || die "some binaries are missing in $bin after the build"
for b in "${binaries[@]}"; do log "built $b ($(du -h "$bin/$b" | cut -f1))"; done
log "done in $((SECONDS - started))s: $bin"
