"""Watch one namespace's pods, Jobs and DatabaseMigrations and record every event.

Used by test_gate.py (to check invariants over a whole rollout, not at a few
polled instants) and bench/gate_bench.py (event arrival times). Runs its own
asyncio loop in a thread; the API's watch events of one resource arrive in
order, so replaying them reconstructs the state after each event.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeharness.kubeapi import ApiError, KubeAPI
from migrategate.api import constants as c

PATHS = {
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "DatabaseMigration": f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{{ns}}/{c.PLURAL}",
}


@dataclass(frozen=True)
class Event:
    at: float  # time.monotonic() on arrival
    kind: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    initial: bool = False  # from the listing made before watching

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


class Recorder:
    def __init__(
        self, server: str, pki: Path, namespace: str, sink: Callable[[Event], None] | None = None
    ) -> None:
        self.server, self.pki, self.namespace = server, pki, namespace
        self.sink = sink  # also called with each event, from the recorder's thread
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._listed = threading.Barrier(len(PATHS) + 1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stopping: asyncio.Event | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 30) -> Recorder:
        self._thread.start()
        self._listed.wait(timeout)  # every initial list is in: later events are live
        return self

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def events(self, kind: str | None = None) -> list[Event]:
        if self.error is not None:
            raise AssertionError(f"recorder failed: {self.error!r}")
        with self._lock:
            return [e for e in self._events if kind is None or e.kind == kind]

    def states(self, kind: str) -> Iterator[tuple[Event, dict[str, dict[str, Any]]]]:
        """Every live object of `kind` by name: once after the initial listing, then after
        each watch event (with that event)."""
        live: dict[str, dict[str, Any]] = {}
        events = self.events(kind)
        initial = [e for e in events if e.initial]
        for event in initial:
            live[event.name] = event.obj
        if initial:
            yield initial[-1], dict(live)
        for event in events[len(initial) :]:
            if event.type == "DELETED":
                live.pop(event.name, None)
            else:
                live[event.name] = event.obj
            yield event, dict(live)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced by events()
            self.error = e
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        api = KubeAPI(self.server, self.pki)
        try:
            tasks = [asyncio.create_task(self._follow(api, kind)) for kind in PATHS]
            stop = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            for task in done:
                if task is not stop and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            await api.close()

    async def _follow(self, api: KubeAPI, kind: str) -> None:
        path = PATHS[kind].format(ns=self.namespace)
        listing = await api.request("GET", path)
        assert listing is not None
        for obj in listing.get("items") or []:
            self._record(kind, "ADDED", obj, initial=True)
        version = listing["metadata"]["resourceVersion"]
        await asyncio.get_running_loop().run_in_executor(None, self._listed.wait)
        while True:  # the server ends a watch now and then; resume where it stopped
            try:
                async for event in api.watch(path, version):
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._record(kind, event["type"], obj)
            except ApiError as e:
                if e.status != 410:
                    raise
                listing = await api.request("GET", path)
                assert listing is not None
                version = listing["metadata"]["resourceVersion"]

    def _record(self, kind: str, type_: str, obj: dict[str, Any], initial: bool = False) -> None:
        event = Event(time.monotonic(), kind, type_, obj, initial)
        with self._lock:
            self._events.append(event)
        if self.sink is not None:
            self.sink(event)


class ProcessRecorder(Recorder):
    """A Recorder in a child process, so its arrival times do not queue behind the GIL of a
    busy parent (the benchmark's in-process pod runner). CLOCK_MONOTONIC is system-wide,
    so its times compare with the parent's."""

    def __init__(self, server: str, pki: Path, namespace: str) -> None:
        super().__init__(server, pki, namespace)
        ctx = multiprocessing.get_context("spawn")
        self._queue: Any = ctx.Queue()
        self._stop = ctx.Event()
        args = (server, str(pki), namespace, self._queue, self._stop)
        self._proc = ctx.Process(target=_record_in_child, args=args, daemon=True)

    def start(self, timeout: float = 30) -> Recorder:
        self._proc.start()
        while (item := self._queue.get(timeout=timeout)) != "listed":
            self._events.append(item)  # the initial listing
        return self

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()

    def events(self, kind: str | None = None) -> list[Event]:
        while True:
            try:
                self._events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [e for e in self._events if kind is None or e.kind == kind]


def _record_in_child(server: str, pki: str, namespace: str, out: Any, stop: Any) -> None:
    rec = Recorder(server, Path(pki), namespace, sink=out.put).start()
    out.put("listed")
    stop.wait()
    rec.stop()


# ---------------------------------------------------------------------- pod facts


def image_of(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def gated(pod: dict[str, Any]) -> bool:
    return any(g.get("name") == c.SCHEDULING_GATE for g in pod["spec"].get("schedulingGates") or [])


def ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conds)


def job_complete(job: dict[str, Any]) -> bool:
    conds = (job.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Complete" and x.get("status") == "True" for x in conds)
