"""What every group of rows is given: the targets, the measuring worker, the settings, and an
API client per target for setting things up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from bench.docker_api import DockerApi
from bench.settings import Settings
from bench.targets import Endpoint, Targets
from bench.worker_client import Worker

# Setting up (creating, removing) several containers at once; the daemons do the work.
SETUP_CONCURRENCY = 4


@dataclass
class Context:
    targets: Targets
    worker: Worker
    settings: Settings
    apis: dict[str, DockerApi] = field(default_factory=dict)

    def api(self, endpoint: Endpoint) -> DockerApi:
        if endpoint.label not in self.apis:
            self.apis[endpoint.label] = DockerApi(endpoint.url, self.targets.api_version)
        return self.apis[endpoint.label]

    @property
    def proxy_api(self) -> DockerApi:
        return self.api(self.targets.proxy)

    @property
    def direct_api(self) -> DockerApi:
        return self.api(self.targets.direct)

    def pin(self, endpoint: Endpoint) -> str:
        """The node to pin a container to when making it through `endpoint` (a proxy), so
        that it lands on the node the direct target is."""
        return self.targets.node_name if endpoint.via_proxy else ""

    async def close(self) -> None:
        await asyncio.gather(*(api.close() for api in self.apis.values()))


async def bounded(
    awaitables: Iterable[Awaitable[Any]], limit: int = SETUP_CONCURRENCY
) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(awaitable: Awaitable[Any]) -> Any:
        async with semaphore:
            return await awaitable

    return await asyncio.gather(*(one(a) for a in awaitables))


class Containers:
    """The containers a row makes, each removed through the API that made it when the row
    is done, whether it succeeded or not."""

    def __init__(self) -> None:
        self._made: list[tuple[DockerApi, str]] = []

    async def create(self, api: DockerApi, config: dict[str, Any], start: bool = False) -> str:
        container_id = await api.create(config)
        self._made.append((api, container_id))
        if start:
            await api.start(container_id)
        return container_id

    async def remove_all(self) -> None:
        made, self._made = self._made, []
        await bounded((api.remove(cid) for api, cid in made), limit=8)

    async def __aenter__(self) -> Containers:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.remove_all()
