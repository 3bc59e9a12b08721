"""The index as the proxy keeps it, read from outside for the tests' checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from swarmproxy.storage import open_storage


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.2)


def index_names(url: str, prefix: str, names: list[str]) -> dict[str, str | None]:
    """What the proxy's Redis index says of each name, read as the proxy reads it."""

    async def read() -> dict[str, str | None]:
        storage = open_storage(url, prefix)
        try:
            return {name: await storage.retrieve_name(name) for name in names}
        finally:
            await storage.close()

    return asyncio.run(read())
