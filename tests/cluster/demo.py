"""`make demo`: migrategate end to end on this machine, with nothing but Go, Python and PostgreSQL.

It builds (once) and starts a local cluster (etcd, kube-apiserver, controller
manager, scheduler, and one real node: containerd + runc, kubelet, kube-proxy),
a throwaway PostgreSQL, and builds the migrategate image and the sample app's
images with buildah. It installs the operator with its Helm chart, then the
example app chart at v1, and upgrades it to v2, showing the DatabaseMigration
and the pods as they go: the v2 pods wait behind their scheduling gate until
v2's schema is migrated.

    make demo    # or: PYTHONPATH=tests python tests/cluster/demo.py [--keep] [--expand-contract]

With --expand-contract (make demo DEMO_ARGS=--expand-contract) the app goes from ec-v1 to
ec-v2 instead, which renames items.name to items.title in two halves
(docs/expand-contract.md): the expand half before the new pods start, the contract half
(dropping items.name) only once the last ec-v1 pod is gone. Every pod keeps reading and
writing its own column all along.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import localstack
import samples
from kubeharness import binaries
from kubeharness.controlplane import ControlPlane
from kubeharness.images import NodeImages
from migrationkit import REPO

NAMESPACE = "demo"
RELEASE = "shop"
STYLE = "seed001_async_settings"  # async_engine_from_config, the most common async env.py
REPLICAS = 2
SECRET = "shop-database"

# The application itself: new code reads the column its own migration adds, so a v2
# pod started before its schema would crash. The gate makes sure it never is.
APP = """
import asyncio, os, sys, time
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
COLUMNS = {"v1": "slug", "v2": "slug, created_at"}[sys.argv[1]]
async def check():
    engine = create_async_engine(os.environ["DATABASE_URL"])
    async with engine.connect() as conn:
        await conn.execute(text(f"SELECT {COLUMNS} FROM items LIMIT 1"))
        rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    await engine.dispose()
    print(f"app {sys.argv[1]} serving on schema {rev}", flush=True)
asyncio.run(check())
while True:
    time.sleep(3600)
"""

# --expand-contract: each version reads and writes its own column every second, all along;
# an error ends the pod (a restart would show in the demo's pod lines).
APP_EC = """
import asyncio, os, sys
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
COLUMN = {"ec-v1": "name", "ec-v2": "title"}[sys.argv[1]]
async def serve():
    engine = create_async_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
    first = True
    while True:
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE items SET {COLUMN} = 'demo' WHERE id = 1"))
            await conn.execute(text(f"SELECT {COLUMN} FROM items LIMIT 1"))
            rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        if first:
            print(f"app {sys.argv[1]} serving on items.{COLUMN} (schema {rev})", flush=True)
            first = False
        await asyncio.sleep(1)
asyncio.run(serve())
"""


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def ensure_binaries() -> None:
    if binaries.missing():
        say("Building the cluster's binaries from Go modules (once; about 10 min on 2 cores)")
        subprocess.run(["bash", str(REPO / "tests/cluster/build.sh")], check=True)


# The two versions the demo releases, and their serve.py: by --expand-contract.
DEMO_APPS = {False: (("v1", "v2"), APP), True: (("ec-v1", "ec-v2"), APP_EC)}


def app_images(images: NodeImages, expand_contract: bool = False) -> dict[str, str]:
    """The app image at v1 and v2 (or ec-v1 and ec-v2): a sample Alembic project plus the
    app's own serve.py."""
    versions, app = DEMO_APPS[expand_contract]
    return {v: images.app(STYLE, v, files={"serve.py": app}) for v in versions}


def release(cp: ControlPlane, version: str, image: str, secret: str) -> None:
    """`helm template` of the example app chart at `version`, applied like `helm upgrade`."""
    repository, tag = image.rsplit(":", 1)
    values = {
        "image.repository": repository,
        "image.tag": tag,
        "command": f"{{python,serve.py,{version}}}",
        "replicas": str(REPLICAS),
        "databaseURL.secretName": secret,
        "migration.name": RELEASE,
    }
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    chart = str(REPO / "charts/examples/app")
    rendered = subprocess.run(
        ["helm", "template", RELEASE, chart, "--namespace", NAMESPACE, *sets],
        env=cp.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    print(cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=rendered).strip())


def snapshot(cp: ControlPlane, labels: dict[str, str]) -> list[str]:
    """One line for the DatabaseMigration, one per pod; images shown by ``labels``."""
    dbm = json.loads(cp.kubectl("get", "dbm", RELEASE, "-n", NAMESPACE, "-o", "json"))
    st = dbm.get("status") or {}
    phases = st.get("phases") or {}
    halves = "".join(
        f" {half}={(phases.get(half) or {}).get('state', '-')}" for half in phases
    )  # only with a contract branch
    lines = [
        f"  dbm/{RELEASE}: phase={st.get('phase', '-')} image={labels.get(st.get('image'), '-')} "
        f"revision={','.join(st.get('currentRevision') or []) or '-'} "
        f"applied={','.join(st.get('appliedRevisions') or []) or '-'}{halves}"
    ]
    if (phases.get("contract") or {}).get("state") == "WaitingForRollout":
        lines.append(f"    {phases['contract'].get('message', '')}")
    pods = json.loads(cp.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        image = labels.get(pod["spec"]["containers"][0]["image"], "?")
        gated = "gated " if pod["spec"].get("schedulingGates") else ""
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions") or []
        )
        phase = pod.get("status", {}).get("phase", "Pending")
        lines.append(
            f"  pod/{pod['metadata']['name']}: {image} {gated}{phase}{' Ready' if ready else ''}"
        )
    return lines


def app_pods(cp: ControlPlane) -> list[str]:
    """The app's pods, less the old ones on their way out."""
    selector = "app.kubernetes.io/name=app"
    out = cp.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json")
    pods = [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]
    return [p["metadata"]["name"] for p in pods]


def first_log_line(cp: ControlPlane, pod: str, timeout: float = 30) -> str:
    """The app's first line of output (Ready comes when it starts, before it has printed)."""
    deadline = time.monotonic() + timeout
    logs = ("logs", "-n", NAMESPACE, pod, "-c", "app")
    while not (log := cp.kubectl(*logs, check=False).strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return log.splitlines()[0] if log else "(no output yet)"


def rolled_out(cp: ControlPlane, image: str) -> bool:
    """`image` migrated (both halves, with a contract branch: Ready) and rolled out."""
    dbm = json.loads(cp.kubectl("get", "dbm", RELEASE, "-n", NAMESPACE, "-o", "json"))
    st = dbm.get("status") or {}
    ready = any(x["type"] == "Ready" and x["status"] == "True" for x in st.get("conditions") or [])
    migrated = st.get("migratedImage") == image and st.get("image") == image and ready
    done = subprocess.run(
        [
            "kubectl",
            "rollout",
            "status",
            f"deployment/{RELEASE}-app",
            "-n",
            NAMESPACE,
            "--timeout=1s",
        ],
        env=cp.env,
        capture_output=True,
    )
    return migrated and done.returncode == 0


def follow(cp: ControlPlane, image: str, labels: dict[str, str], timeout: float = 300) -> None:
    """Print the state whenever it changes, until `image` is migrated and rolled out."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        lines = snapshot(cp, labels)
        if lines != last:
            print(f"[{time.strftime('%H:%M:%S')}]", *lines, sep="\n", flush=True)
            last = lines
        if rolled_out(cp, image):
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: {image} did not roll out within {timeout:.0f}s")


def run(keep: bool, expand_contract: bool = False) -> None:
    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="migrategate-demo-"))
    started = time.monotonic()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack = cleanup.enter_context(localstack.running(workdir, NAMESPACE, say))
        cp, pg = stack.cp, stack.pg
        first, second = DEMO_APPS[expand_contract][0]
        say(f"Building the app's {first} and {second} images (cached after the first run)")
        images = app_images(stack.images, expand_contract)
        labels = {image: f"app:{version}" for version, image in images.items()}
        for version, image in images.items():
            print(f"  app:{version} is {image}")
        database = pg.create_database("shop")
        url = pg.url(database)
        cp.kubectl(
            "create", "secret", "generic", SECRET, "-n", NAMESPACE, f"--from-literal=url={url}"
        )
        for version in images:
            say(f"helm upgrade --install {RELEASE} charts/examples/app --set image.tag={version}")
            release(cp, version, images[version], SECRET)
            follow(cp, images[version], labels)
        heads = [row[0] for row in pg.execute("SELECT version_num FROM alembic_version", database)]
        if expand_contract:  # the contract half ran: items.name is gone
            assert heads == [samples.phase_heads_of(second)[1]], heads
        else:
            assert heads == [samples.head_of(second)], heads
        took = time.monotonic() - started
        say(f"Done in {took:.0f}s: schema at {heads[0]}, {second} pods Ready")
        print(cp.kubectl("get", "dbm,deploy,pods", "-n", NAMESPACE))
        for pod in app_pods(cp):
            print(f"  {pod}: {first_log_line(cp, pod)}")
        if keep:
            print(f"Kept running. Try:\n  export KUBECONFIG={cp.kubeconfig}")
            print(f"  export PATH={cp.bin_dir}:$PATH\n  kubectl get dbm -n {NAMESPACE} -o yaml")
            print(f"  kubectl logs -n {localstack.OPERATOR_NAMESPACE} deploy/rel-migrategate")
            print("Ctrl-C stops everything.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    say("Cleaned up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    parser.add_argument(
        "--expand-contract",
        action="store_true",
        help="ec-v1 -> ec-v2: a rename in two halves, the drop only after the rollout",
    )
    args = parser.parse_args(argv)
    # Clean up on `kill` as on Ctrl-C: nothing of the demo may outlive it.
    signal.signal(signal.SIGTERM, _interrupt_once)
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        run(args.keep, args.expand_contract)
    except KeyboardInterrupt:
        say("Interrupted; cleaned up")
        return 130
    return 0


def _interrupt_once(signum: int, frame: object) -> None:
    """Stop the demo; a second signal must not cut its clean-up short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
