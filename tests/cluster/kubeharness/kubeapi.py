"""A minimal async JSON client for the apiserver (aiohttp), used by the watch recorder.

Thin on purpose: objects stay plain dicts exactly as the API returns them.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

JSON = dict[str, Any]
CONNECT_ATTEMPTS = 5


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status = status


class KubeAPI:
    def __init__(self, server: str, pki: Path) -> None:
        """``pki`` holds ``ca.crt`` and ``admin.crt``/``admin.key``, or (an existing
        cluster's, see kubeharness.external) a ``token`` instead of the pair."""
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        headers = {}
        if (pki / "token").exists():
            headers["Authorization"] = f"Bearer {(pki / 'token').read_text().strip()}"
        else:
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.server = server
        # Watch lines can be long (a pod is several KiB); raise aiohttp's line limit.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=50), read_bufsize=2**22, headers=headers
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        ok_missing: bool = False,
    ) -> JSON | None:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                async with self.session.request(
                    method, self.server + path, data=data, headers=headers
                ) as r:
                    text = await r.text()
                    break
            except (aiohttp.ClientConnectionError, TimeoutError):
                # A dropped keep-alive connection or a busy apiserver: try again.
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        if r.status == 404 and ok_missing:
            return None
        if r.status >= 400:
            raise ApiError(r.status, text)
        return json.loads(text) if text else {}

    async def get(self, path: str) -> JSON | None:
        """The object, or None when it does not exist."""
        return await self.request("GET", path, ok_missing=True)

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[JSON]:
        """Watch events ({type, object}) from ``resource_version`` until the server ends it."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.server + path, params=params, timeout=timeout) as r:
            if r.status >= 400:
                raise ApiError(r.status, await r.text())
            async for line in r.content:
                if line.strip():
                    yield json.loads(line)
