"""The operator at scale: 100 DatabaseMigrations applied at once, then a restart over 300.

    PYTHONPATH=tests:tests/cluster .venv/bin/python -m bench scale -- [--objects 100]
        [--restart-objects 300] [--batch 100] [--json out.json]

One cluster with its real node and the chart-installed operator (bench/cluster.py);
every DatabaseMigration migrates its own database (the ``seed004_ini_url``
sample at ``v1``: 3 revisions) from its own Secret. Issue 13, part 2.

Burst: ``--objects`` DatabaseMigrations created concurrently (one POST each, all
in flight together). Measured:

- apply -> all Ready: from the first create to the watch event of the last
  DatabaseMigration's Ready=True (the bench's own watches, in a child process);
- the operator's RSS (VmRSS of its container's process): idle before, the peak
  (sampled every 0.2 s), and idle after; RSS per extra object;
- API requests per migration: the operator's own, counted by a FlowSchema that
  matches only its ServiceAccount (``apiserver_flowcontrol_dispatched_requests_total``;
  ``apiserver_request_total`` has no label for the client), and every client's
  together (``apiserver_request_total``: the kubelet, the Job controller, the
  scheduler and the bench too), before and after, both from the API server's
  /metrics;
- the operator's CPU seconds (user + system of its process) over the burst.

Restart: more DatabaseMigrations, ``--batch`` at a time, until ``--restart-objects``
exist, all migrated. The operator is scaled to 0; while it is down every
object's ``status.conditions`` are removed (so that "current again" is a watch
event; the new operator so writes each status once, where a restart over
untouched statuses would write none); it is scaled back to 1. Measured: scale-up
-> the operator container running -> every DatabaseMigration Ready=True again,
its requests, reconciles and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gatewatch
import localstack
from kubeharness.kubeapi import KubeAPI
from kubeharness.wait import eventually
from migrategate.api import constants as c

from bench import cluster

NAMESPACE = "scale-bench"
STYLE, VERSION = "seed004_ini_url", "v1"
FLOW_SCHEMA = "bench-migrategate-operator"
OPERATOR_SELECTOR = "app.kubernetes.io/name=migrategate"  # the chart's Deployment and pods
IDLE_SECONDS = 10
GOALS = {"rss_mb_at_100": 150, "rss_mb_at_300": 200, "operator_requests_per_migration": 15}
DBM_PATH = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NAMESPACE}/{c.PLURAL}"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets"
SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# ------------------------------------------------------------------- the API server's metrics


def api_metrics(stack: localstack.Stack) -> dict[str, Any]:
    """Request counters from the API server's /metrics: the operator's (its FlowSchema)
    and every client's, by verb and resource."""
    operator = 0.0
    everyone: dict[str, float] = {}
    for line in stack.cp.kubectl("get", "--raw", "/metrics").splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match[1], dict(LABEL.findall(match[2])), float(match[3])
        if name == "apiserver_flowcontrol_dispatched_requests_total":
            if labels.get("flow_schema") == FLOW_SCHEMA:
                operator += value
        elif name == "apiserver_request_total":
            key = f"{labels.get('verb')} {labels.get('resource')}"
            if labels.get("subresource"):
                key += f"/{labels['subresource']}"
            everyone[key] = everyone.get(key, 0.0) + value
    return {"operator": operator, "everyone": everyone}


def requests_between(before: dict[str, Any], after: dict[str, Any], per: int) -> dict[str, Any]:
    """Requests made between two snapshots, per migration."""
    delta = {
        k: after["everyone"][k] - before["everyone"].get(k, 0.0)
        for k in after["everyone"]
        if after["everyone"][k] - before["everyone"].get(k, 0.0) > 0
    }
    operator = after["operator"] - before["operator"]
    top = sorted(delta.items(), key=lambda kv: -kv[1])[:12]
    return {
        "operator_requests": int(operator),
        "operator_requests_per_migration": round(operator / per, 2),
        "all_clients_requests": int(sum(delta.values())),
        "all_clients_requests_per_migration": round(sum(delta.values()) / per, 2),
        "all_clients_top": {k: int(v) for k, v in top},
    }


def count_operator_requests(stack: localstack.Stack) -> None:
    """A FlowSchema that matches the operator's ServiceAccount alone, at the priority
    level its requests have by default (workload-low, as every ServiceAccount's)."""
    account = cluster.operator_pod(stack)["spec"]["serviceAccountName"]
    every = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": FLOW_SCHEMA},
        "spec": {
            "matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "workload-low"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {
                                "name": account,
                                "namespace": localstack.OPERATOR_NAMESPACE,
                            },
                        }
                    ],
                    "resourceRules": [{**every, "clusterScope": True, "namespaces": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }
    stack.cp.kubectl("apply", "-f", "-", input=json.dumps(schema))

    def matched() -> None:
        got = json.loads(stack.cp.kubectl("get", "flowschema", FLOW_SCHEMA, "-o", "json"))
        conds = {x["type"]: x["status"] for x in (got.get("status") or {}).get("conditions", [])}
        assert conds.get("Dangling") == "False", conds

    eventually(matched, timeout=30)


# ----------------------------------------------------------------------------- the operator


class RssSampler:
    """The operator's RSS every 0.2 s, in a thread; ``peak`` in MB. ``pid_of`` finds the
    operator's process; while there is none (a restart) it keeps looking."""

    def __init__(self, pid_of: Callable[[], int]) -> None:
        self.pid_of, self.peak = pid_of, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid: int | None = None
        while not self._stop.is_set():
            try:
                pid = pid or self.pid_of()
                self.peak = max(self.peak, cluster.rss_mb(pid))
            except (AssertionError, OSError, RuntimeError):
                pid = None  # not started yet, or gone
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def operator_facts(stack: localstack.Stack) -> dict[str, float]:
    pid = stack.operator_pid()
    return {"rss_mb": round(cluster.rss_mb(pid), 1), "cpu_s": cluster.cpu_seconds(pid)}


def reconciles(stack: localstack.Stack) -> float:
    total = 0.0
    for line in cluster.operator_metrics(stack).splitlines():
        if line.startswith("migrategate_reconciles_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scale_operator(stack: localstack.Stack, replicas: int) -> None:
    ns = ("-n", localstack.OPERATOR_NAMESPACE)
    found = stack.cp.kubectl("get", "deploy", *ns, "-l", OPERATOR_SELECTOR, "-o", "name")
    (deployment,) = found.split()
    stack.cp.kubectl("scale", deployment, f"--replicas={replicas}", *ns)


# ------------------------------------------------------------------------------ the objects


def names(start: int, count: int) -> list[str]:
    return [f"m{i:04d}" for i in range(start, start + count)]


def prepare(stack: localstack.Stack, batch: list[str]) -> None:
    """A database and a Secret for each name."""
    urls = {name: stack.pg.url(stack.pg.create_database()) for name in batch}
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}, "stringData": {"url": u}}
        for n, u in urls.items()
    ]
    _run_api(stack, [("POST", SECRET_PATH, s, "application/json") for s in secrets])


def migration(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name},
        "spec": {"image": image, "databaseURL": {"secretKeyRef": {"name": name, "key": "url"}}},
    }


def _run_api(stack: localstack.Stack, calls: Iterable[tuple[str, str, Any, str]]) -> None:
    """Concurrent API calls (aiohttp, up to 50 connections), as the admin."""

    async def go() -> None:
        api = KubeAPI(stack.cp.server, stack.cp.workdir / "pki")
        try:
            await asyncio.gather(
                *(api.request(m, p, body, content_type=t) for m, p, body, t in calls)
            )
        finally:
            await api.close()

    asyncio.run(go())


def ready_at(rec: gatewatch.Recorder, batch: list[str], after: float) -> dict[str, float]:
    """Arrival of each DatabaseMigration's first Ready=True event after ``after``."""
    wanted, seen = set(batch), {}
    for e in rec.events("DatabaseMigration"):
        if e.name in wanted and e.name not in seen and e.at >= after and not e.initial:
            conds = (e.obj.get("status") or {}).get("conditions") or []
            if any(x["type"] == "Ready" and x["status"] == "True" for x in conds):
                seen[e.name] = e.at
    assert len(seen) == len(wanted), f"{len(seen)} of {len(wanted)} Ready"
    return seen


def apply_and_wait(
    stack: localstack.Stack, rec: gatewatch.Recorder, batch: list[str], image: str
) -> tuple[float, dict[str, float]]:
    """Create every DatabaseMigration of ``batch`` at once; (start, Ready arrival by name)."""
    started = time.monotonic()
    _run_api(stack, [("POST", DBM_PATH, migration(n, image), "application/json") for n in batch])
    timeout = 120 + 6 * len(batch)
    return started, eventually(lambda: ready_at(rec, batch, started), timeout, interval=0.5)


# ------------------------------------------------------------------------------ the phases


def burst(stack: localstack.Stack, rec: gatewatch.Recorder, n: int, image: str) -> dict:
    batch = names(0, n)
    prepare(stack, batch)
    time.sleep(IDLE_SECONDS)
    idle = operator_facts(stack)
    before = api_metrics(stack)
    with RssSampler(stack.operator_pid) as sampler:
        started, ready = apply_and_wait(stack, rec, batch, image)
    cpu_busy = operator_facts(stack)["cpu_s"] - idle["cpu_s"]
    time.sleep(IDLE_SECONDS)
    after = operator_facts(stack)
    latencies = [t - started for t in ready.values()]
    return {
        "objects": n,
        "apply_to_all_ready_s": round(max(latencies), 2),
        "apply_to_ready_median_s": round(statistics.median(latencies), 2),
        "rss_mb": {
            "idle_before": idle["rss_mb"],
            "peak": round(max(sampler.peak, after["rss_mb"]), 1),
            "idle_after": after["rss_mb"],
        },
        "rss_kb_per_extra_object": round((after["rss_mb"] - idle["rss_mb"]) * 1024 / n, 1),
        "operator_cpu_s": {
            "to_all_ready": round(cpu_busy, 2),
            "to_idle_after": round(after["cpu_s"] - idle["cpu_s"], 2),
        },
        "requests": requests_between(before, api_metrics(stack), n),
    }


def restart(
    stack: localstack.Stack,
    rec: gatewatch.Recorder,
    existing: tuple[int, float],
    total: int,
    size: int,
    image: str,
) -> dict:
    """``existing``: the objects there are, and the operator's idle RSS with them (MB)."""
    have, rss_with_have = existing
    grown = []
    for start in range(have, total, size):
        batch = names(start, min(size, total - start))
        prepare(stack, batch)
        began, ready = apply_and_wait(stack, rec, batch, image)
        grown.append(round(max(ready.values()) - began, 1))
    every = names(0, total)
    time.sleep(IDLE_SECONDS)
    long_running = operator_facts(stack)
    scale_operator(stack, 0)
    eventually(lambda: _no_operator(stack), timeout=120, interval=0.5)
    stale = [{"op": "remove", "path": "/status/conditions"}]
    patch = "application/json-patch+json"
    _run_api(stack, [("PATCH", f"{DBM_PATH}/{n}/status", stale, patch) for n in every])
    before = api_metrics(stack)
    op_rec = cluster.recorder(stack.cp, localstack.OPERATOR_NAMESPACE)
    try:
        up = time.monotonic()
        scale_operator(stack, 1)
        with RssSampler(stack.operator_pid) as sampler:
            current = eventually(lambda: ready_at(rec, every, up), timeout=600, interval=0.5)
        running = min(
            e.at for e in op_rec.events("Pod") if e.at >= up and _operator_container_running(e.obj)
        )
    finally:
        op_rec.stop()
    done = max(current.values())
    counted = reconciles(stack)
    after_metrics = api_metrics(stack)
    time.sleep(IDLE_SECONDS)
    after = operator_facts(stack)
    return {
        "objects": total,
        "batches_to_all_ready_s": grown,
        "rss_mb_long_running": long_running["rss_mb"],
        "rss_kb_per_extra_object_long_running": round(
            (long_running["rss_mb"] - rss_with_have) * 1024 / (total - have), 1
        ),
        "rss_mb_peak_during_restart": round(sampler.peak, 1),
        "scale_up_to_operator_running_s": round(running - up, 2),
        "operator_running_to_all_current_s": round(done - running, 2),
        "scale_up_to_all_current_s": round(done - up, 2),
        "reconciles_by_then": counted,
        "rss_mb_after_restart": after["rss_mb"],
        "operator_cpu_s_since_restart": round(after["cpu_s"], 2),
        "requests": requests_between(before, after_metrics, total),
    }


def _no_operator(stack: localstack.Stack) -> None:
    ns = ("-n", localstack.OPERATOR_NAMESPACE)
    out = stack.cp.kubectl("get", "pods", *ns, "-l", OPERATOR_SELECTOR, "-o", "name")
    assert not out.strip(), out


def _operator_container_running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s["name"] == "operator" and "running" in s["state"] for s in statuses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench scale", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100, help="applied at once")
    parser.add_argument(
        "--restart-objects", type=int, default=300, help="migrated before the restart (0: none)"
    )
    parser.add_argument("--batch", type=int, default=100, help="objects applied at once to grow")
    parser.add_argument("--json", type=Path, help="also write the results here")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    if args.restart_objects and args.restart_objects < args.objects:
        parser.error("--restart-objects: at least --objects (or 0)")
    status = cluster.isolated("scale", raw, lambda: cluster.build_images((STYLE, VERSION)))
    if status is not None:
        return status
    with cluster.stack(NAMESPACE) as stack:
        image = stack.images.app(STYLE, VERSION)
        count_operator_requests(stack)
        rec = cluster.recorder(stack.cp, NAMESPACE)
        try:
            results: dict[str, Any] = {"burst": burst(stack, rec, args.objects, image)}
            cluster.say(f"burst of {args.objects}: {results['burst']['apply_to_all_ready_s']}s")
            if args.restart_objects:
                have = (args.objects, results["burst"]["rss_mb"]["idle_after"])
                results["restart"] = restart(
                    stack, rec, have, args.restart_objects, args.batch, image
                )
        finally:
            rec.stop()
    results["goals"] = GOALS
    return cluster.publish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
