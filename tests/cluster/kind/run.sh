#!/usr/bin/env bash
# The cluster scenarios on a kind cluster (make kind-e2e). Extra arguments go to pytest.
#
# Needs docker with a reachable daemon, kind, kubectl and helm on PATH; without
# them it prints "kind e2e skipped: <what is missing>" and exits 0. Otherwise it
#   - builds the migrategate image (image/Dockerfile) and the sample app images
#     with docker build (images.py), and writes the image map;
#   - creates the kind cluster $KIND_CLUSTER (migrategate-e2e), its kubeconfig in
#     a temp dir (~/.kube/config is left alone), and kind-loads the images;
#   - starts PostgreSQL 15 in a container on the kind network;
#   - runs pytest on tests/cluster, minus the tests marked own_node, with the
#     MIGRATEGATE_* variables of tests/cluster/kubeharness/external.py;
#   - deletes the cluster, the container and the temp dir on exit, whatever happened
#     (MIGRATEGATE_KIND_KEEP=1 keeps them and says where they are).
# The test process reaches PostgreSQL at the container's address on the kind
# network, which a Linux host routes to; Docker Desktop's VM does not.
#
# Written on a machine with no Docker daemon: it has not been run there
# (tests/cluster/README.md says what was checked instead).
set -euo pipefail

missing=()
if ! command -v docker >/dev/null 2>&1; then
    missing+=("docker is not on PATH")
elif ! { if command -v timeout >/dev/null 2>&1; then timeout 30 docker info; else docker info; fi; } \
    >/dev/null 2>&1; then
    missing+=("no reachable Docker daemon (docker info failed)")
fi
for tool in kind kubectl helm; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool is not on PATH")
done
if ((${#missing[@]} > 0)); then
    reason=$(printf '%s; ' "${missing[@]}")
    printf 'kind e2e skipped: %s\n' "${reason%; }"
    exit 0
fi

here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
cd "$here/../../.."

CLUSTER=${KIND_CLUSTER:-migrategate-e2e}
PG_CONTAINER=$CLUSTER-pg
PG_IMAGE=${MIGRATEGATE_KIND_PG_IMAGE:-postgres:15}
PY=${PYTHON:-.venv/bin/python}
PGDATA=/var/lib/postgresql/data # postgres:15's
# Throwaway data: durability off, as tests/pgserver.py does.
PG_SETTINGS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"

if [[ ! -x $PY ]]; then
    echo "$PY not found: run make setup first (or set PYTHON)" >&2
    exit 1
fi
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "a kind cluster named $CLUSTER exists already; delete it or set KIND_CLUSTER" >&2
    exit 1
fi
if docker container inspect "$PG_CONTAINER" >/dev/null 2>&1; then
    echo "a container named $PG_CONTAINER exists already; remove it or set KIND_CLUSTER" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mg-kind.XXXXXX")
cluster_created=0
pg_started=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ ${MIGRATEGATE_KIND_KEEP:-} == 1 ]]; then
        echo "kept: kind cluster $CLUSTER (KUBECONFIG=$WORK/kubeconfig), container $PG_CONTAINER, $WORK"
    else
        if ((pg_started)); then docker rm -f "$PG_CONTAINER" >/dev/null 2>&1 || true; fi
        if ((cluster_created)); then kind delete cluster --name "$CLUSTER" || true; fi
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> docker build: the migrategate image and the sample app images"
python_image=()
if [[ -n ${MIGRATEGATE_KIND_PYTHON_IMAGE:-} ]]; then
    python_image=(--python-image "$MIGRATEGATE_KIND_PYTHON_IMAGE")
fi
PYTHONPATH=tests:tests/cluster "$PY" tests/cluster/kind/images.py build --out "$WORK/images.json" ${python_image[@]+"${python_image[@]}"}

echo "==> kind create cluster --name $CLUSTER"
cluster_created=1
node_image=()
if [[ -n ${KIND_NODE_IMAGE:-} ]]; then node_image=(--image "$KIND_NODE_IMAGE"); fi
kind create cluster --name "$CLUSTER" --kubeconfig "$WORK/kubeconfig" --wait 180s \
    ${node_image[@]+"${node_image[@]}"}

echo "==> kind load docker-image"
mapfile -t images < <(PYTHONPATH=tests:tests/cluster "$PY" tests/cluster/kind/images.py names "$WORK/images.json")
kind load docker-image --name "$CLUSTER" "${images[@]}"

echo "==> PostgreSQL ($PG_IMAGE) on the kind network"
pg_password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
pg_started=1
# PID 1 outlives the server (sleep), so the tests can stop and start it with pg_ctl
# and it keeps its address.
docker run -d --name "$PG_CONTAINER" --network kind -e POSTGRES_PASSWORD="$pg_password" \
    "$PG_IMAGE" bash -c "docker-entrypoint.sh postgres $PG_SETTINGS; exec sleep infinity" >/dev/null
for _ in $(seq 60); do
    if docker exec "$PG_CONTAINER" pg_isready -q -h 127.0.0.1 -U postgres 2>/dev/null; then break; fi
    sleep 1
done
if ! docker exec "$PG_CONTAINER" pg_isready -q -h 127.0.0.1 -U postgres; then
    docker logs "$PG_CONTAINER" >&2 || true
    echo "PostgreSQL did not come up in $PG_CONTAINER" >&2
    exit 1
fi
pg_host=$(docker inspect -f '{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}' \
    "$PG_CONTAINER")
if [[ -z $pg_host ]]; then
    echo "$PG_CONTAINER has no address on the kind network" >&2
    exit 1
fi

export MIGRATEGATE_KUBECONFIG="$WORK/kubeconfig"
export MIGRATEGATE_IMAGES="$WORK/images.json"
export MIGRATEGATE_PG_ADMIN_URL="postgresql://postgres:$pg_password@$pg_host:5432/postgres"
export MIGRATEGATE_PG_STOP="docker exec -u postgres $PG_CONTAINER pg_ctl -D $PGDATA -m fast -w stop"
export MIGRATEGATE_PG_START="docker exec -u postgres $PG_CONTAINER pg_ctl -D $PGDATA -l /tmp/restart.log -w -o '$PG_SETTINGS' start"

echo "==> pytest tests/cluster -m 'not own_node' against $CLUSTER"
"$PY" -m pytest tests/cluster -m "not own_node" "$@"
