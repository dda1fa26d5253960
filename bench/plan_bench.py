"""Plan step benchmark (issue 11): the time a plan Job adds before the migration Job starts.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench plan -- [--runs 10] [--json F]

Alternates DatabaseMigrations of one sample image (each on a fresh database) under
approval policy Auto and OnFindings, and measures with the bench's own watches:
- apply -> migration Job created, for each policy (the difference is the plan's cost);
- under OnFindings, plan Job created -> migration Job created (the plan Job's pod
  start, the runner rendering and linting offline, the operator reading its result).
A plan that needs approval is approved by the bench as soon as it sees
AwaitingApproval; those runs are counted (the figures then include that round trip).
Same stack as `bench operator` (bench/cluster.py: its own namespaces, the chart's pod).
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
    """Watch-event arrival times of plan and migration Jobs, by DatabaseMigration name."""

    def __init__(self) -> None:
        self.plan_added: dict[str, float] = {}
        self.migrate_added: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.awaiting: dict[str, str] = {}  # name -> plan hash awaiting approval

    async def watch_jobs(self, api: client.ApiClient) -> None:
        batch = client.BatchV1Api(api)
        async with watch.Watch() as w:
            async for event in w.stream(
                batch.list_namespaced_job, NAMESPACE, label_selector=c.LABEL_MIGRATION
            ):
                job = event["object"]
                labels = job.metadata.labels or {}
                owner = labels[c.LABEL_MIGRATION]
                plan = labels.get(c.LABEL_JOB_KIND) == c.JOB_KIND_PLAN
                (self.plan_added if plan else self.migrate_added).setdefault(
                    owner, time.monotonic()
                )

    async def watch_migrations(self, api: client.ApiClient) -> None:
        custom = client.CustomObjectsApi(api)
        async with watch.Watch() as w:
            async for event in w.stream(
                custom.list_namespaced_custom_object, c.GROUP, c.VERSION, NAMESPACE, c.PLURAL
            ):
                obj = event["object"]
                name = obj["metadata"]["name"]
                status = obj.get("status") or {}
                if status.get("phase") == c.REASON_AWAITING_APPROVAL:
                    self.awaiting.setdefault(name, (status.get("plan") or {}).get("hash", ""))
                conds = status.get("conditions") or []
                if any(x["type"] == "Ready" and x["status"] == "True" for x in conds):
                    self.ready.setdefault(name, time.monotonic())


async def run_bench(cp: Any, pg: pgserver.PgServer, image: str, runs: int) -> dict[str, Any]:
    await config.load_kube_config(config_file=str(cp.kubeconfig))
    clock = Clock()
    applied: dict[str, float] = {}
    policy: dict[str, str] = {}
    approved: set[str] = set()
    async with client.ApiClient() as api:
        tasks = [
            asyncio.create_task(clock.watch_jobs(api)),
            asyncio.create_task(clock.watch_migrations(api)),
        ]
        await asyncio.sleep(1)  # let both watches establish
        custom = client.CustomObjectsApi(api)
        for i in range(runs * 2):
            name = f"plan-{i:03d}"
            policy[name] = "Auto" if i % 2 == 0 else "OnFindings"
            db = pg.create_database()
            secret = f"db-{i:03d}"
            cp.kubectl(
                "create", "secret", "generic", secret, "-n", NAMESPACE,
                f"--from-literal=url={pg.url(db)}",
            )  # fmt: skip
            body = {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND,
                "metadata": {"name": name},
                "spec": {
                    "image": image,
                    "databaseURL": {"secretKeyRef": {"name": secret, "key": "url"}},
                    "approval": {"policy": policy[name]},
                },
            }
            await custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, body
            )
            applied[name] = time.monotonic()
            deadline = time.monotonic() + 180
            while name not in clock.ready:
                if name in clock.awaiting and name not in approved:
                    approved.add(name)
                    patch = {
                        "metadata": {"annotations": {c.ANNOTATION_APPROVE: clock.awaiting[name]}}
                    }
                    await custom.patch_namespaced_custom_object(
                        c.GROUP,
                        c.VERSION,
                        NAMESPACE,
                        c.PLURAL,
                        name,
                        patch,
                        _content_type="application/merge-patch+json",
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not Ready in 180 s")
                await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
    auto = [n for n in sorted(applied) if policy[n] == "Auto"]
    gated = [n for n in sorted(applied) if policy[n] != "Auto"]
    return {
        "auto_apply_to_migration_job": summary([clock.migrate_added[n] - applied[n] for n in auto]),
        "onfindings_apply_to_migration_job": summary(
            [clock.migrate_added[n] - applied[n] for n in gated]
        ),
        "plan_job_to_migration_job": summary(
            [clock.migrate_added[n] - clock.plan_added[n] for n in gated]
        ),
        "runs_approved_by_the_bench": len(approved),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench plan", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per policy")
    parser.add_argument("--json", type=Path, help="also write the results here")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    images = lambda: cluster.build_images((STYLE, VERSION))  # noqa: E731
    status = cluster.isolated("plan", raw, images)
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        image = stack.images.app(STYLE, VERSION)
        results = asyncio.run(run_bench(stack.cp, stack.pg, image, args.runs))
    return cluster.publish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
