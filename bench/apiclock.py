"""What the operator and plan benchmarks share: timed watches, one migration's body, main().

Both create DatabaseMigrations of one sample image one after another in the
``bench`` namespace and time them from their own watches on the API server
(kubernetes_asyncio, in the bench's process: it does nothing but wait between
events). Each stamps an event with ``time.monotonic()`` on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

import localstack
import pgserver
from kubernetes_asyncio import client, config, watch
from migrategate.api import constants as c

from bench import cluster

NAMESPACE = "bench"
STYLE, VERSION = "seed004_ini_url", "v1"

Bench = Callable[[Any, pgserver.PgServer, str, int], Awaitable[dict[str, Any]]]


async def job_events(api: client.ApiClient) -> AsyncIterator[tuple[float, Any]]:
    """(arrival, V1Job) of every event of the migrations' Jobs (plan and migrate)."""
    batch = client.BatchV1Api(api)
    async with watch.Watch() as w:
        async for event in w.stream(
            batch.list_namespaced_job, NAMESPACE, label_selector=c.LABEL_MIGRATION
        ):
            yield time.monotonic(), event["object"]


async def migration_events(api: client.ApiClient) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    """(arrival, object) of every DatabaseMigration event."""
    custom = client.CustomObjectsApi(api)
    async with watch.Watch() as w:
        async for event in w.stream(
            custom.list_namespaced_custom_object, c.GROUP, c.VERSION, NAMESPACE, c.PLURAL
        ):
            yield time.monotonic(), event["object"]


def ready(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(x["type"] == "Ready" and x["status"] == "True" for x in conds)


@contextlib.asynccontextmanager
async def watching(*watches: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run the watches as tasks, give them a second to establish, cancel them after."""
    tasks = [asyncio.create_task(w) for w in watches]
    await asyncio.sleep(1)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()


async def create(api: client.ApiClient, body: dict[str, Any]) -> float:
    """Create a DatabaseMigration; the time the call returned."""
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, body
    )
    return time.monotonic()


async def until(
    seen: Mapping[str, float],
    name: str,
    timeout: float,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Poll every 50 ms (awaiting ``meanwhile`` each time), for up to ``timeout`` s, until
    the watches have seen ``name`` Ready (``seen``: Ready arrival by name)."""
    deadline = time.monotonic() + timeout
    while name not in seen:
        if meanwhile:
            await meanwhile()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not Ready in {timeout:g} s")
        await asyncio.sleep(0.05)


def main(
    name: str,
    doc: str,
    argv: list[str] | None,
    bench: Bench,
    runs: tuple[int, str],
    after: Callable[[localstack.Stack], dict[str, Any]] | None = None,
) -> int:
    """Parse ``--runs``/``--json``, run ``bench(cp, pg, image, runs)`` on a stack in its own
    namespaces, add ``after(stack)``'s figures, and publish."""
    parser = cluster.arguments(name, doc, *runs)
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    status = cluster.isolated(name, raw, lambda: cluster.build_images((STYLE, VERSION)))
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        image = stack.images.app(STYLE, VERSION)

        async def go() -> dict[str, Any]:
            await config.load_kube_config(config_file=str(stack.cp.kubeconfig))
            return await bench(stack.cp, stack.pg, image, args.runs)

        results = asyncio.run(go())
        if after:
            results.update(after(stack))
    return cluster.publish(results, args.json)
