"""The few Docker Engine API calls the suite needs to set up what it measures."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from bench.wire import http_url

IMAGE = "busybox:latest"
# Slow work (waiting for a container that writes 200 MB) must not be cut short.
CALL_TIMEOUT = aiohttp.ClientTimeout(total=600)


class DockerApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:500]}")
        self.status = status


class DockerApi:
    """One target (a node or a proxy), on its own keep-alive connection pool."""

    def __init__(self, url: str, api_version: str = "", connections: int = 8) -> None:
        self.url = url
        self.base = http_url(url)
        self.prefix = f"/v{api_version}" if api_version else ""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=CALL_TIMEOUT,
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204, 304),
    ) -> Any:
        """The decoded JSON answer (None when empty); DockerApiError on any other status."""
        async with self._session.request(
            method,
            self.base + self.prefix + path,
            json=body,
            params=params,
        ) as response:
            payload = await response.read()
            if response.status not in ok:
                raise DockerApiError(
                    method, path, response.status, payload.decode("utf-8", "replace")
                )
            if not payload or "json" not in response.content_type:
                return None
            return json.loads(payload)

    async def version(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", "/version")
        return result

    async def create(self, config: dict[str, Any], name: str = "") -> str:
        params = {"name": name} if name else None
        answer = await self.call("POST", "/containers/create", config, params=params)
        return str(answer["Id"])

    async def start(self, container_id: str) -> None:
        await self.call("POST", f"/containers/{container_id}/start")

    async def wait(self, container_id: str) -> int:
        answer = await self.call("POST", f"/containers/{container_id}/wait")
        return int(answer["StatusCode"])

    async def run(self, config: dict[str, Any]) -> str:
        """Create and start; the container's ID."""
        container_id = await self.create(config)
        await self.start(container_id)
        return container_id

    async def remove(self, container_id: str) -> None:
        await self.call(
            "DELETE", f"/containers/{container_id}", params={"force": "1", "v": "1"}, ok=(204, 404)
        )

    async def inspect(self, container_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/containers/{container_id}/json")
        return result

    async def list_containers(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        params = {"all": "1", "filters": json.dumps(filters)}
        result: list[dict[str, Any]] = await self.call("GET", "/containers/json", params=params)
        return result

    async def create_exec(self, container_id: str, config: dict[str, Any]) -> str:
        answer = await self.call("POST", f"/containers/{container_id}/exec", config)
        return str(answer["Id"])


def container_config(
    cmd: list[str], pin_to: str = "", labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """A create body for busybox; `pin_to` names the node a proxy must place it on (classic
    Swarm's `-e constraint:node==NAME`, which the proxy takes out before the node sees it)."""
    config: dict[str, Any] = {"Image": IMAGE, "Cmd": cmd, "Labels": labels or {}}
    if pin_to:
        config["Env"] = [f"constraint:node=={pin_to}"]
    config.update(extra)
    return config
