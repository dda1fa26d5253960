"""One pod on our node: volumes, init containers, containers, status, teardown.

The kubelet stand-in for a single pod. Its only I/O is the apiserver (through
``KubeAPI``), the pod's directory and its processes; the decisions come from
``podspec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import podspec as ps
from .images import ImageFile
from .kubeapi import ApiError, KubeAPI
from .procs import Ledger, die_with_parent, kill_group

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0  # how often a blocked container (missing Secret, ...) retries


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool
    state: dict[str, Any] = field(default_factory=lambda: ps.waiting("ContainerCreating"))
    last_state: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    pid: int | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec["image"],
            "imageID": "",
            "containerID": f"local://{self.pid}" if self.pid else "",
            "ready": running and not self.init,
            "started": running,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker:
    def __init__(
        self,
        pod: ps.Pod,
        api: KubeAPI,
        images: ImageFile,
        root: Path,
        ledger: Ledger,
        backoff: float,
    ) -> None:
        self.pod = pod
        self.api = api
        self.images = images
        meta = pod["metadata"]
        self.dir = root / meta["namespace"] / f"{meta['name']}-{meta['uid']}"
        self.ledger = ledger
        self.backoff = backoff
        meta = pod["metadata"]
        self.path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        self.policy = pod["spec"].get("restartPolicy") or "Always"
        self.inits = [Container(c, True) for c in pod["spec"].get("initContainers") or []]
        self.mains = [Container(c, False) for c in pod["spec"].get("containers") or []]
        self.initialized = not self.inits
        self.sandbox_ready = False
        self.final_phase = ""  # set when the pod ends other than by its containers
        self.reason = self.message = ""
        self.start_time = ps.now()
        self.stopping = False
        self.stopping_requested = False  # a deletion is being handled
        self.task: asyncio.Task[None] | None = None
        self.volume_dirs: dict[str, str] = {}
        self._write_lock = asyncio.Lock()
        self._transitions: dict[str, tuple[str, str]] = {}  # type -> (status, since)

    # --- lifecycle ----------------------------------------------------------

    async def run(self) -> None:
        """Run the pod to completion (or until killed) and report each step."""
        for c in self.inits[1:] + (self.mains if self.inits else []):
            c.state = ps.waiting("PodInitializing")
        await self.write_status()
        if not await self._pull_images() or not await self._setup_volumes():
            return
        self.sandbox_ready = True
        for c in self.inits:
            if not await self._run_until_done(c) or self.stopping:
                return
        self.initialized = True
        await asyncio.gather(*(self._run_until_done(c) for c in self.mains))

    @property
    def phase(self) -> str:
        if self.final_phase:
            return self.final_phase
        if not self.initialized:
            return "Pending"
        return ps.pod_phase(self.policy, [c.state for c in self.mains])

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    async def kill(self, grace: float) -> None:
        """Stop every process of the pod (deletion, deadline); no restarts after."""
        self.stopping = True
        pids = [c.pid for c in self.inits + self.mains if c.pid and "running" in c.state]
        if pids:
            await asyncio.gather(*(asyncio.to_thread(kill_group, p, grace) for p in pids))
        if self.task and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def deadline_exceeded(self) -> None:
        # Decided before the kill, so no status write reports Failed without the reason.
        self.final_phase, self.reason = "Failed", "DeadlineExceeded"
        self.message = "Pod was active on the node longer than the specified deadline"
        await self.kill(grace=0)
        self._mark_killed()
        await self.write_status()

    async def deleted(self, grace: float) -> None:
        """Kill, report a terminal phase, then confirm the deletion as a kubelet does."""
        if not self.finished:
            await self.kill(grace)
            self._mark_killed()
            codes = [c.state.get("terminated", {}).get("exitCode", 1) for c in self.mains]
            self.final_phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
            with contextlib.suppress(ApiError):
                await self.write_status()
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.pod["metadata"]["uid"]}}
        with contextlib.suppress(ApiError):
            await self.api.request("DELETE", self.path, body)

    def _mark_killed(self) -> None:
        for c in self.inits + self.mains:
            if "running" in c.state:
                started = c.state["running"]["startedAt"]
                c.state = ps.terminated(137, started, ps.now(), reason="Error")

    # --- steps --------------------------------------------------------------

    async def _pull_images(self) -> bool:
        """Every image must be in the table; otherwise ErrImagePull, then back-off and retry."""
        reason = "ErrImagePull"
        while not self.stopping:
            missing = [c for c in self.inits + self.mains if c.spec["image"] not in self.images]
            if not missing:
                return True
            for c in missing:
                image = c.spec["image"]
                msg = f'Failed to pull image "{image}": image "{image}" is not in the image table'
                if reason == "ImagePullBackOff":
                    msg = f'Back-off pulling image "{image}"'
                c.state = ps.waiting(reason, msg)
            await self.write_status()
            await asyncio.sleep(RETRY_SECONDS)  # the test may add the image meanwhile
            reason = "ImagePullBackOff"
        return False

    async def _setup_volumes(self) -> bool:
        """emptyDir, Secret, ConfigMap, projected volumes as directories of the pod."""
        while not self.stopping:
            try:
                await self._write_volumes()
                return True
            except ps.MountError as e:
                for c in self.inits[:1] or self.mains:
                    c.state = ps.waiting("ContainerCreating", str(e))
                await self.write_status()
                await asyncio.sleep(RETRY_SECONDS)
        return False

    async def _write_volumes(self) -> None:
        secrets, configmaps = await self._fetch_objects()
        token = await self._token() if ps.needs_token(self.pod) else ""
        for v in self.pod["spec"].get("volumes") or []:
            files = ps.volume_files(v, self.pod, secrets, configmaps, token)
            d = self.dir / "volumes" / v["name"]
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)  # emptyDir is world-writable, so non-root containers can use it
            for rel, (data, mode) in (files or {}).items():
                f = d / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
                f.chmod(mode)
            self.volume_dirs[v["name"]] = str(d)

    async def _fetch_objects(self) -> tuple[ps.Objects, ps.Objects]:
        ns = self.pod["metadata"]["namespace"]
        found: dict[str, ps.Objects] = {"secret": {}, "configMap": {}}
        for kind, plural in (("secret", "secrets"), ("configMap", "configmaps")):
            for name in ps.referenced(self.pod, kind):
                obj = await self.api.get(f"/api/v1/namespaces/{ns}/{plural}/{name}")
                if obj is not None:
                    found[kind][name] = ps.decode(obj, kind)
        return found["secret"], found["configMap"]

    async def _token(self) -> str:
        meta = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
        try:
            resp = await self.api.request("POST", path, body)
        except ApiError as e:
            raise ps.MountError(f"failed to fetch token: {e}") from None
        return str((resp or {})["status"]["token"])

    async def _run_until_done(self, c: Container) -> bool:
        """Run a container, restarting it as restartPolicy says; True if it exited 0."""
        delay = self.backoff
        while not self.stopping:
            code = await self._run_once(c)
            if code is None:  # could not start; retried inside until stopping
                return False
            if code == 0 and (c.init or self.policy != "Always"):
                return True
            if not ps.should_restart(self.policy, code) or self.stopping:
                if c.init:  # a failed init container fails the pod under Never
                    self.final_phase = "Failed"
                    await self.write_status()
                return False
            c.last_state, c.restarts = c.state, c.restarts + 1
            pod_name = self.pod["metadata"]["name"]
            msg = f"back-off {delay:g}s restarting failed container={c.name} pod={pod_name}"
            c.state = ps.waiting("CrashLoopBackOff", msg)
            await self.write_status()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        return False

    async def _run_once(self, c: Container) -> int | None:
        """Start the process (retrying config errors), wait for it, record its exit."""
        while True:
            if self.stopping:
                return None
            try:
                proc, term, log = await self._spawn(c)
                break
            except ps.ContainerConfigError as e:
                c.state = ps.waiting("CreateContainerConfigError", str(e))
                await self.write_status()
                await asyncio.sleep(RETRY_SECONDS)
        started = ps.now()
        c.pid, c.state = proc.pid, ps.running(started)
        await self.write_status()
        raw = await proc.wait()
        code = raw if raw >= 0 else 128 - raw  # killed by a signal: 128 + signal
        msg = ps.termination_message(c.spec, _read(term), _read(log), code)
        c.state = ps.terminated(code, started, ps.now(), msg)
        await self.write_status()
        return code

    async def _spawn(self, c: Container) -> tuple[asyncio.subprocess.Process, Path, Path]:
        image = self.images[c.spec["image"]]
        secrets, configmaps = await self._fetch_objects()
        env = ps.container_env(self.pod, c.spec, image, secrets, configmaps)
        argv = ps.container_argv(c.spec, image, env)
        uid, gid = ps.run_as(self.pod, c.spec, image)
        run_dir = self.dir / "containers" / f"{c.name}-{c.restarts}"
        run_dir.mkdir(parents=True, exist_ok=True)
        term, log = run_dir / "termination-log", run_dir / "log"
        term.touch(mode=0o666)
        term.chmod(0o666)  # writable by a non-root container
        mounts = ps.mounts(c.spec, image, self.volume_dirs, str(term))
        files = {m.host for m in mounts if os.path.isfile(m.host)}
        workdir = c.spec.get("workingDir") or image.working_dir or "/"
        launch = ps.launch_argv(argv, mounts, workdir, uid, gid, files)
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *launch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.ledger.record(proc.pid)
        return proc, term, log

    # --- status -------------------------------------------------------------

    async def write_status(self) -> None:
        """Report the whole pod status (strategic merge: conditions merge by type)."""
        async with self._write_lock:
            try:
                await self.api.request(
                    "PATCH",
                    self.path + "/status",
                    {"status": self._status()},
                    "application/strategic-merge-patch+json",
                )
            except ApiError as e:
                if e.status != 404:  # a gone pod is normal; anything else is a harness bug
                    log.error("status of %s rejected: %s", self.path, e)

    def _status(self) -> dict[str, Any]:
        phase = self.phase
        ready = phase == "Running" and all("running" in c.state for c in self.mains)
        why = "PodCompleted" if self.finished else ("" if ready else "ContainersNotReady")
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": self._stamped(
                ps.condition("PodReadyToStartContainers", self.sandbox_ready and not self.finished),
                ps.condition(
                    "Initialized",
                    self.initialized,
                    "" if self.initialized else "ContainersNotInitialized",
                ),
                ps.condition("ContainersReady", ready, why),
                ps.condition("Ready", ready, why),
            ),
            "initContainerStatuses": [c.status() for c in self.inits],
            "containerStatuses": [c.status() for c in self.mains],
        }
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        return status

    def _stamped(self, *conditions: dict[str, Any]) -> list[dict[str, Any]]:
        """Conditions with lastTransitionTime kept until their status changes."""
        out = []
        for c in conditions:
            seen = self._transitions.get(c["type"])
            if seen is None or seen[0] != c["status"]:
                seen = self._transitions[c["type"]] = (c["status"], ps.now())
            out.append({**c, "lastTransitionTime": seen[1], "lastProbeTime": None})
        return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
