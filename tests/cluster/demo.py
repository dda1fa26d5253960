"""`make demo`: migrategate end to end on this machine, with nothing but Go, Python and PostgreSQL.

It builds (once) and starts a local control plane (etcd, kube-apiserver,
kube-controller-manager), a throwaway PostgreSQL, the pod runner that stands in
for a kubelet, and the operator. Then it installs the example app chart at v1
and upgrades it to v2, showing the DatabaseMigration and the pods as they go:
the v2 pods wait behind their scheduling gate until v2's schema is migrated.

    python tests/cluster/demo.py [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import localstack
import migrationkit
import samples
from kubeharness import binaries
from kubeharness.controlplane import ControlPlane
from kubeharness.images import Image
from kubeharness.podrunner import PodRunner
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


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def ensure_binaries() -> None:
    if binaries.missing():
        say("Building the local control plane from Go modules (once; 10-25 min on 2 cores)")
        subprocess.run(["bash", str(REPO / "tests/cluster/build.sh")], check=True)


def app_images(workdir: Path) -> dict[str, Image]:
    """The app image at v1 and v2: a sample Alembic project plus the app's own command."""
    images = {}
    for version in ("v1", "v2"):
        image = migrationkit.app_image(STYLE, version, workdir / f"app-{version}")
        entrypoint = ("python", "-c", APP, version)
        images[f"demo-app:{version}"] = dataclasses.replace(image, entrypoint=entrypoint)
    return images


def release(cp: ControlPlane, version: str, secret: str) -> None:
    """`helm template` of the example app chart at `version`, applied like `helm upgrade`."""
    values = {
        "image.repository": "demo-app",
        "image.tag": version,
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


def snapshot(cp: ControlPlane) -> list[str]:
    """One line for the DatabaseMigration, one per pod."""
    dbm = json.loads(cp.kubectl("get", "dbm", RELEASE, "-n", NAMESPACE, "-o", "json"))
    st = dbm.get("status") or {}
    lines = [
        f"  dbm/{RELEASE}: phase={st.get('phase', '-')} image={st.get('image', '-')} "
        f"revision={','.join(st.get('currentRevision') or []) or '-'} "
        f"applied={','.join(st.get('appliedRevisions') or []) or '-'}"
    ]
    pods = json.loads(cp.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        image = pod["spec"]["containers"][0]["image"]
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
    selector = "app.kubernetes.io/name=app"
    out = cp.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "name")
    return [line.removeprefix("pod/") for line in out.split()]


def first_log_line(runner: PodRunner, pod: str, timeout: float = 30) -> str:
    """The app's first line of output (Ready comes when it starts, before it has printed)."""
    deadline = time.monotonic() + timeout
    while not (log := runner.log(NAMESPACE, pod, "app").strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return log.splitlines()[0] if log else "(no output yet)"


def rolled_out(cp: ControlPlane, version: str) -> bool:
    dbm = json.loads(cp.kubectl("get", "dbm", RELEASE, "-n", NAMESPACE, "-o", "json"))
    migrated = (dbm.get("status") or {}).get("migratedImage") == f"demo-app:{version}"
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


def follow(cp: ControlPlane, version: str, timeout: float = 300) -> None:
    """Print the state whenever it changes, until `version` is migrated and rolled out."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        lines = snapshot(cp)
        if lines != last:
            print(f"[{time.strftime('%H:%M:%S')}]", *lines, sep="\n", flush=True)
            last = lines
        if rolled_out(cp, version):
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: {version} did not roll out within {timeout:.0f}s")


def run(keep: bool) -> None:
    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="migrategate-demo-"))
    started = time.monotonic()
    with localstack.running(workdir, NAMESPACE, app_images(workdir), say) as stack:
        cp, runner, pg = stack.cp, stack.runner, stack.pg
        print(f"  operator log: {stack.operator.log_path}")
        database = pg.create_database("shop")
        url = pg.url(database)
        cp.kubectl(
            "create", "secret", "generic", SECRET, "-n", NAMESPACE, f"--from-literal=url={url}"
        )
        for version in ("v1", "v2"):
            say(f"helm upgrade --install {RELEASE} charts/examples/app --set image.tag={version}")
            release(cp, version, SECRET)
            follow(cp, version)
        heads = [row[0] for row in pg.execute("SELECT version_num FROM alembic_version", database)]
        assert heads == [samples.head_of("v2")], heads
        say(f"Done in {time.monotonic() - started:.0f}s: schema at {heads[0]}, v2 pods Ready")
        print(cp.kubectl("get", "dbm,deploy,pods", "-n", NAMESPACE))
        for pod in app_pods(cp):
            print(f"  {pod}: {first_log_line(runner, pod)}")
        if keep:
            print(f"Kept running. Try:\n  export KUBECONFIG={cp.kubeconfig}")
            print(f"  export PATH={cp.bin_dir}:$PATH\n  kubectl get dbm -n {NAMESPACE} -o yaml")
            print("Ctrl-C stops everything.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    say("Cleaned up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    args = parser.parse_args(argv)
    # Clean up on `kill` as on Ctrl-C: nothing of the demo may outlive it.
    signal.signal(signal.SIGTERM, _interrupt_once)
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        run(args.keep)
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
