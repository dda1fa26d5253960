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
one sample project's real image as the app image (bench/apiclock.py, shared with
`bench plan`).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import localstack
import operatorkit
import pgserver
from kubernetes_asyncio import client
from migrategate.api import constants as c

from bench import apiclock, cluster
from bench.stats import summary

GOALS = {
    "apply_to_job_created_p95_ms": 300,
    "job_complete_to_ready_p95_ms": 300,
    "idle_rss_mb": 120,
}


class Clock:
    """Watch-event arrival times, by object name."""

    def __init__(self) -> None:
        self.job_added: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        self.ready: dict[str, float] = {}

    async def watch_jobs(self, api: client.ApiClient) -> None:
        async for now, job in apiclock.job_events(api):
            owner = job.metadata.labels[c.LABEL_MIGRATION]
            self.job_added.setdefault(owner, now)
            conds = job.status.conditions or []
            if any(x.type == "Complete" and x.status == "True" for x in conds):
                self.job_complete.setdefault(owner, now)

    async def watch_migrations(self, api: client.ApiClient) -> None:
        async for now, obj in apiclock.migration_events(api):
            if apiclock.ready(obj):
                self.ready.setdefault(obj["metadata"]["name"], now)


async def run_bench(cp: Any, pg: pgserver.PgServer, image: str, runs: int) -> dict[str, Any]:
    db = pg.create_database()
    cp.kubectl(
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        apiclock.NAMESPACE,
        f"--from-literal=url={pg.url(db)}",
    )
    clock = Clock()
    applied: dict[str, float] = {}
    async with (
        client.ApiClient() as api,
        apiclock.watching(clock.watch_jobs(api), clock.watch_migrations(api)),
    ):
        for i in range(runs):
            name = f"bench-{i:03d}"
            applied[name] = await apiclock.create(
                api, operatorkit.migration_manifest(name, image, "db")
            )
            await apiclock.until(clock.ready, name, 120)
    names = sorted(applied)
    return {
        "apply_to_job_created": summary([clock.job_added[n] - applied[n] for n in names]),
        "job_complete_to_ready": summary([clock.ready[n] - clock.job_complete[n] for n in names]),
    }


def idle_rss(stack: localstack.Stack) -> dict[str, Any]:
    time.sleep(5)  # idle
    return {"operator_idle_rss_mb": round(cluster.rss_mb(stack.operator_pid()), 1), "goals": GOALS}


def main(argv: list[str] | None = None) -> int:
    return apiclock.main("operator", __doc__, argv, run_bench, (20, "runs"), after=idle_rss)


if __name__ == "__main__":
    sys.exit(main())
