"""The kubelet stand-in, run as its own process: ``python -m kubeharness.kubelet``.

One Ready node, pod binding, pods run as local processes. It watches all pods
and reacts to each event at once (no polling): it binds schedulable pods to
its node through ``pods/binding`` (gated pods stay Pending), runs bound pods
with a ``PodWorker`` each, and confirms graceful deletions after killing
processes. Tests drive it through ``podrunner.PodRunner``; it lives in its own
process so neither side's work delays the other's (the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from . import podspec as ps
from .binaries import versions
from .images import ImageFile
from .kubeapi import ApiError, KubeAPI
from .podworker import PodWorker
from .procs import Ledger

log = logging.getLogger(__name__)
NODE_LABELS_BASE = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}


class Kubelet:
    def __init__(
        self,
        api: KubeAPI,
        images: ImageFile,
        workdir: Path,
        ledger: Ledger,
        node_name: str,
        backoff: float,
    ) -> None:
        self.api = api
        self.images = images
        self.workdir = workdir
        self.ledger = ledger
        self.node_name = node_name
        self.node_labels = {**NODE_LABELS_BASE, "kubernetes.io/hostname": node_name}
        self.backoff = backoff  # first restart back-off (kubelet: 10s), doubling to 10s
        self.workers: dict[str, PodWorker] = {}
        self._binding: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()

    async def run(self, ready_file: Path) -> None:
        """Register the node, watch pods until SIGTERM, then kill every container."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._register_node()
            watcher = asyncio.create_task(self._watch_pods(ready_file))
            await self._stop.wait()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        finally:
            await self._kill_all()
            await self.api.close()

    async def _kill_all(self) -> None:
        await asyncio.gather(*(w.kill(grace=2.0) for w in self.workers.values()))
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self.node_labels},
        }
        with contextlib.suppress(ApiError):  # already there from an earlier runner
            await self.api.request("POST", "/api/v1/nodes", node)
        status = {
            "status": {
                "conditions": [
                    {
                        **ps.condition("Ready", True, "KubeletReady", "pod runner is ready"),
                        "lastHeartbeatTime": ps.now(),
                        "lastTransitionTime": ps.now(),
                    },
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "capacity": {"cpu": "2", "memory": "24Gi", "pods": "250"},
                "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "250"},
                "nodeInfo": _node_info(),
            }
        }
        await self.api.request(
            "PATCH",
            f"/api/v1/nodes/{self.node_name}/status",
            status,
            "application/strategic-merge-patch+json",
        )

    async def _watch_pods(self, ready_file: Path) -> None:
        """List, then watch from that resourceVersion; relist when the watch expires."""
        rv = ""
        while True:
            try:
                if not rv:
                    rv = await self._relist()
                    ready_file.touch()
                async for event in self.api.watch("/api/v1/pods", rv):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        rv = ""  # 410 Gone: our resourceVersion is too old
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._on_pod(event["type"], obj)
            except (TimeoutError, ApiError, OSError, aiohttp.ClientError) as e:
                log.warning("pod watch ended (%s); resuming", e)
                if isinstance(e, ApiError) and e.status == 410:
                    rv = ""  # expired resourceVersion: list again
                await asyncio.sleep(0.2)

    async def _relist(self) -> str:
        """Handle every pod as ADDED; forget workers whose pod vanished meanwhile."""
        listing = await self.api.request("GET", "/api/v1/pods")
        assert listing is not None
        uids = {p["metadata"]["uid"] for p in listing["items"]}
        for uid, worker in list(self.workers.items()):
            if uid not in uids and not worker.stopping_requested:
                worker.stopping_requested = True
                self._spawn(self._forget(worker, grace=0))
        for pod in listing["items"]:
            self._on_pod("ADDED", pod)
        return str(listing["metadata"]["resourceVersion"])

    def _on_pod(self, kind: str, pod: ps.Pod) -> None:
        uid = pod["metadata"]["uid"]
        spec, meta = pod["spec"], pod["metadata"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker and not worker.stopping_requested:  # deleted without grace
                worker.stopping_requested = True
                self._spawn(self._forget(worker, grace=0))
            return
        if spec.get("nodeName") == self.node_name:
            if worker is None and not _terminal(pod):
                worker = self._new_worker(pod)
            if meta.get("deletionTimestamp") and worker and not worker.stopping_requested:
                worker.stopping_requested = True
                grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                self._spawn(self._forget(worker, grace=min(grace, 10.0)))
            elif meta.get("deletionTimestamp") and worker is None:
                self._spawn(self._confirm_delete(pod))
            elif worker:
                worker.pod = pod  # spec is immutable; keep metadata fresh for fieldRefs
        elif ps.schedulable(pod, self.node_labels) and uid not in self._binding:
            self._binding.add(uid)
            self._spawn(self._bind(pod))

    def _new_worker(self, pod: ps.Pod) -> PodWorker:
        root = self.workdir / "pods"
        worker = PodWorker(pod, self.api, self.images, root, self.ledger, self.backoff)
        self.workers[pod["metadata"]["uid"]] = worker
        worker.task = self._spawn(worker.run())
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            self._spawn(self._deadline(worker, float(deadline)))
        return worker

    async def _deadline(self, worker: PodWorker, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not worker.finished and not worker.stopping:
            await worker.deadline_exceeded()

    async def _bind(self, pod: ps.Pod) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
        try:
            await self.api.request("POST", path, body)
        except ApiError as e:  # deleted or bound meanwhile: the next event tells
            log.info("binding %s/%s: %s", meta["namespace"], meta["name"], e)

    async def _forget(self, worker: PodWorker, grace: float) -> None:
        await worker.deleted(grace)
        self.workers.pop(worker.pod["metadata"]["uid"], None)
        await asyncio.to_thread(shutil.rmtree, worker.dir, True)

    async def _confirm_delete(self, pod: ps.Pod) -> None:
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiError):
            await self.api.request(
                "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body
            )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A tracked task; failures are logged, never swallowed silently."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception():
            log.error("pod runner task failed", exc_info=task.exception())


def _terminal(pod: ps.Pod) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def _node_info() -> dict[str, str]:
    v = versions()["KUBERNETES_VERSION"]
    return {
        "kubeletVersion": v,
        "kubeProxyVersion": v,
        "operatingSystem": "linux",
        "architecture": "amd64",
        "containerRuntimeVersion": "local-process://0",
        "osImage": "migrategate pod runner",
        "kernelVersion": "",
        "machineID": "",
        "systemUUID": "",
        "bootID": "",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True)
    p.add_argument("--pki", type=Path, required=True, help="dir with ca.crt, admin.crt/key")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True, help="the image table (JSON)")
    p.add_argument("--ledger", type=Path, required=True, help="process ledger to append to")
    p.add_argument("--ready-file", type=Path, required=True)
    p.add_argument("--node-name", default="migrategate-node")
    p.add_argument("--backoff", type=float, default=1.0)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )

    async def run() -> None:
        api = KubeAPI(args.server, args.pki)
        kubelet = Kubelet(
            api,
            ImageFile(args.images),
            args.workdir,
            Ledger(args.ledger),
            args.node_name,
            args.backoff,
        )
        await kubelet.run(args.ready_file)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
