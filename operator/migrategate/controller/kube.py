"""Every Kubernetes API call the operator makes, async (kubernetes_asyncio).

Objects go in and come out as plain dicts in the API's camelCase. Absence and
conflict are tolerated only where a caller asks for it; every other error status
(403, 5xx, ...) and every connection error propagates. There is deliberately
no call that touches Secrets.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from migrategate.api import constants as c
from migrategate.controller.jobs import selector_labels

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class Kube:
    """A connection to the API server; one per operator process."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when present, else the kubeconfig (KUBECONFIG or ~/.kube)."""
        cfg = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(client_configuration=cfg)
        return cls(client.ApiClient(configuration=cfg))

    async def close(self) -> None:
        await self.api.close()

    async def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return body

    async def patch_migration_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted via **kwargs
        )

    async def list_jobs(self, namespace: str, migration: str) -> list[dict[str, Any]]:
        return _items(
            await _raw(
                self.batch.list_namespaced_job(
                    namespace, label_selector=_selector(migration), _preload_content=False
                )
            )
        )

    async def list_pods(self, namespace: str, migration: str) -> list[dict[str, Any]]:
        return _items(
            await _raw(
                self.core.list_namespaced_pod(
                    namespace, label_selector=_selector(migration), _preload_content=False
                )
            )
        )

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment (spec.gate.deployments), or None when there is none of that name."""
        try:
            data = await _raw(
                self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        body: dict[str, Any] = json.loads(data)
        return body

    async def list_namespace_pods(
        self, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Application pods: a Deployment's (by its selector), or every pod of the namespace."""
        return _items(
            await _raw(
                self.core.list_namespaced_pod(
                    namespace, label_selector=label_selector, _preload_content=False
                )
            )
        )

    async def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        """Create the Job; False when one of that name exists already (it is adopted)."""
        try:
            # The created Job is not needed: skip deserialising it.
            await _raw(self.batch.create_namespaced_job(namespace, job, _preload_content=False))  # type: ignore[arg-type]
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods; an absent Job is fine."""
        body = client.V1DeleteOptions(propagation_policy="Background")
        try:
            await self.batch.delete_namespaced_job(name, namespace, body=body)
        except ApiException as e:
            if e.status != 404:
                raise

    async def remove_scheduling_gate(self, namespace: str, name: str, gate: str) -> bool:
        """Remove one entry from a pod's spec.schedulingGates, keeping the others.

        A strategic merge patch deleting by name is idempotent: an entry already
        gone is a no-op. False when the pod itself is gone.
        """
        body = {"spec": {"schedulingGates": [{"name": gate, "$patch": "delete"}]}}
        try:
            # The returned pod is not needed: skip deserialising it.
            await _raw(
                self.core.patch_namespaced_pod(
                    name,
                    namespace,
                    body,
                    _content_type=STRATEGIC_MERGE_PATCH,  # type: ignore[call-arg]  # via **kwargs
                    _preload_content=False,
                )
            )
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    async def post_event(
        self, involved: dict[str, Any], kind: str, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event on `involved` (a body with apiVersion, kind and metadata)."""
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", c.API_VERSION),
                "kind": involved.get("kind", c.KIND),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": c.MANAGED_BY},
            "reportingComponent": c.MANAGED_BY,
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.core.create_namespaced_event(namespace, event)
        except ApiException as e:  # an Event is best effort; never fail a reconcile over it
            log.warning("could not post event %s: %s %s", reason, e.status, e.reason)


async def _raw(call: Awaitable[Any]) -> bytes:
    """The body of a call made with `_preload_content=False`; an error status raises ApiException.

    Such a call skips deserialisation, and in kubernetes_asyncio up to at least 36.1 also the
    status check: it hands back the aiohttp response whatever its status. Later versions
    raise ApiException themselves (tomplus/kubernetes_asyncio#402). Checking here gives
    every version the same behaviour: a 403 or a 500 never reads as an empty list.
    """
    resp = await call
    try:
        data: bytes = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status <= 299:
        error = ApiException(status=resp.status, reason=resp.reason)
        error.body, error.headers = data, resp.headers  # as the client sets them
        raise error
    return data


def _items(data: bytes) -> list[dict[str, Any]]:
    """The items of a list response (a JobList, a PodList); anything else raises."""
    body = json.loads(data)
    if not isinstance(body, dict) or not str(body.get("kind", "")).endswith("List"):
        raise ApiException(status=0, reason=f"not a list response: {data[:200]!r}")
    return list(body.get("items") or [])


def _selector(migration: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(migration).items())
