"""Operator latency benchmark on the local cluster (watch-driven, 20 runs by default).

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench operator -- [--runs 20] [--json F]

Measures, per run, with the bench's own watches on the API server:
- apply -> Job created: from the DatabaseMigration create call returning to the
  Job's ADDED watch event;
- Job Complete -> CR Ready: from the Job's watch event carrying Complete=True to
  the DatabaseMigration's watch event carrying Ready=True;
and the operator's RSS after the runs, idle.

It starts, in its own namespaces (bench/cluster.py), the cluster with its real
node, PostgreSQL and the operator installed by its Helm chart as a pod, and runs
one sample project's real image as the app image.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pgserver
from kubernetes_asyncio import client, config, watch
from migrategate.api import constants as c

from bench import cluster
from bench.stats import summary

NAMESPACE = "bench"
STYLE, VERSION = "seed004_ini_url", "v1"


class Clock:
    """Watch-event arrival times, by object name."""

    def __init__(self) -> None:
        self.job_added: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        self.ready: dict[str, float] = {}

    async def watch_jobs(self, api: client.ApiClient) -> None:
        batch = client.BatchV1Api(api)
        async with watch.Watch() as w:
            async for event in w.stream(
                batch.list_namespaced_job, NAMESPACE, label_selector=c.LABEL_MIGRATION
            ):
                now = time.monotonic()
                job = event["object"]
                owner = job.metadata.labels[c.LABEL_MIGRATION]
                self.job_added.setdefault(owner, now)
                conds = job.status.conditions or []
                if any(x.type == "Complete" and x.status == "True" for x in conds):
                    self.job_complete.setdefault(owner, now)

    async def watch_migrations(self, api: client.ApiClient) -> None:
        custom = client.CustomObjectsApi(api)
        async with watch.Watch() as w:
            async for event in w.stream(
                custom.list_namespaced_custom_object, c.GROUP, c.VERSION, NAMESPACE, c.PLURAL
            ):
                now = time.monotonic()
                obj = event["object"]
                conds = (obj.get("status") or {}).get("conditions") or []
                if any(x["type"] == "Ready" and x["status"] == "True" for x in conds):
                    self.ready.setdefault(obj["metadata"]["name"], now)


async def run_bench(cp: Any, pg: pgserver.PgServer, image: str, runs: int) -> dict[str, Any]:
    await config.load_kube_config(config_file=str(cp.kubeconfig))
    db = pg.create_database()
    cp.kubectl(
        "create", "secret", "generic", "db", "-n", NAMESPACE, f"--from-literal=url={pg.url(db)}"
    )
    clock = Clock()
    applied: dict[str, float] = {}
    async with client.ApiClient() as api:
        tasks = [
            asyncio.create_task(clock.watch_jobs(api)),
            asyncio.create_task(clock.watch_migrations(api)),
        ]
        await asyncio.sleep(1)  # let both watches establish
        custom = client.CustomObjectsApi(api)
        for i in range(runs):
            name = f"bench-{i:03d}"
            body = {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND,
                "metadata": {"name": name},
                "spec": {
                    "image": image,
                    "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
                },
            }
            await custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, body
            )
            applied[name] = time.monotonic()
            deadline = time.monotonic() + 120
            while name not in clock.ready:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not Ready in 120 s")
                await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
    names = sorted(applied)
    return {
        "apply_to_job_created": summary([clock.job_added[n] - applied[n] for n in names]),
        "job_complete_to_ready": summary([clock.ready[n] - clock.job_complete[n] for n in names]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench operator", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    images = lambda: cluster.build_images((STYLE, VERSION))  # noqa: E731
    status = cluster.isolated("operator", raw, images)
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        image = stack.images.app(STYLE, VERSION)
        results = asyncio.run(run_bench(stack.cp, stack.pg, image, args.runs))
        time.sleep(5)  # idle
        results["operator_idle_rss_mb"] = round(cluster.rss_mb(stack.operator_pid()), 1)
    results["goals"] = {
        "apply_to_job_created_p95_ms": 300,
        "job_complete_to_ready_p95_ms": 300,
        "idle_rss_mb": 120,
    }
    return cluster.publish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
