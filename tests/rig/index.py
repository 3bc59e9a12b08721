"""The index as the proxy keeps it, read from outside for the tests' checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from swarmproxy.storage import Storage, open_storage

T = TypeVar("T")


def _read(url: str, prefix: str, read: Callable[[Storage], Awaitable[T]]) -> T:
    """`read` the index at `url` and `prefix` as the proxy reads it."""

    async def opened() -> T:
        storage = open_storage(url, prefix)
        try:
            return await read(storage)
        finally:
            await storage.close()

    return asyncio.run(opened())


def index_names(url: str, prefix: str, names: list[str]) -> dict[str, str | None]:
    """What the index says of each name."""

    async def read(storage: Storage) -> dict[str, str | None]:
        return {name: await storage.retrieve_name(name) for name in names}

    return _read(url, prefix, read)


def indexed(url: str, prefix: str, container_ids: list[str]) -> bool:
    """Whether the index knows every one of the containers."""

    async def read(storage: Storage) -> bool:
        return all([await storage.retrieve_container(c) is not None for c in container_ids])

    return _read(url, prefix, read)
