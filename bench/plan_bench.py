"""Plan step benchmark (issue 11): the time a plan Job adds before the migration Job starts.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench plan -- [--runs 10] [--json F]

Alternates DatabaseMigrations of one sample image (each on a fresh database) under
approval policy Auto and OnFindings, and measures with the bench's own watches:
- apply -> migration Job created, for each policy (the difference is the plan's cost);
- under OnFindings, plan Job created -> migration Job created (the plan Job's pod
  start, the runner rendering and linting offline, the operator reading its result).
A plan that needs approval is approved by the bench as soon as it sees
AwaitingApproval; those runs are counted (the figures then include that round trip).
Same stack and watches as `bench operator` (bench/apiclock.py).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import operatorkit
import pgserver
from kubernetes_asyncio import client
from migrategate.api import constants as c

from bench import apiclock
from bench.stats import summary


class Clock:
    """Watch-event arrival times of plan and migration Jobs, by DatabaseMigration name."""

    def __init__(self) -> None:
        self.plan_added: dict[str, float] = {}
        self.migrate_added: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.awaiting: dict[str, str] = {}  # name -> plan hash awaiting approval

    async def watch_jobs(self, api: client.ApiClient) -> None:
        async for now, job in apiclock.job_events(api):
            labels = job.metadata.labels or {}
            plan = labels.get(c.LABEL_JOB_KIND) == c.JOB_KIND_PLAN
            (self.plan_added if plan else self.migrate_added).setdefault(
                labels[c.LABEL_MIGRATION], now
            )

    async def watch_migrations(self, api: client.ApiClient) -> None:
        async for now, obj in apiclock.migration_events(api):
            name = obj["metadata"]["name"]
            status = obj.get("status") or {}
            if status.get("phase") == c.REASON_AWAITING_APPROVAL:
                self.awaiting.setdefault(name, (status.get("plan") or {}).get("hash", ""))
            if apiclock.ready(obj):
                self.ready.setdefault(name, now)


async def run_bench(cp: Any, pg: pgserver.PgServer, image: str, runs: int) -> dict[str, Any]:
    clock = Clock()
    applied: dict[str, float] = {}
    policy: dict[str, str] = {}
    approved: set[str] = set()
    async with (
        client.ApiClient() as api,
        apiclock.watching(clock.watch_jobs(api), clock.watch_migrations(api)),
    ):
        custom = client.CustomObjectsApi(api)

        async def approve(name: str) -> None:
            """Approve the plan the migration waits on, once."""
            if name not in clock.awaiting or name in approved:
                return
            approved.add(name)
            patch = {"metadata": {"annotations": {c.ANNOTATION_APPROVE: clock.awaiting[name]}}}
            await custom.patch_namespaced_custom_object(
                c.GROUP, c.VERSION, apiclock.NAMESPACE, c.PLURAL, name, patch,
                _content_type="application/merge-patch+json",
            )  # fmt: skip

        for i in range(runs * 2):
            name = f"plan-{i:03d}"
            policy[name] = "Auto" if i % 2 == 0 else "OnFindings"
            db = pg.create_database()
            secret = f"db-{i:03d}"
            cp.kubectl(
                "create", "secret", "generic", secret, "-n", apiclock.NAMESPACE,
                f"--from-literal=url={pg.url(db)}",
            )  # fmt: skip
            body = operatorkit.migration_manifest(
                name, image, secret, approval={"policy": policy[name]}
            )
            applied[name] = await apiclock.create(api, body)
            await apiclock.until(clock.ready, name, 180, functools.partial(approve, name))
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
    return apiclock.main("plan", __doc__, argv, run_bench, (10, "runs per policy"))


if __name__ == "__main__":
    sys.exit(main())
