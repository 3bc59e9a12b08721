"""The event streams of every node merged into one, each event naming its node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from swarmproxy.cluster.core import Cluster
from swarmproxy.cluster.node import Node
from swarmproxy.errors import DockerError, NodeUnavailable, NoNodeAvailable, node_message
from swarmproxy.node_client import TRANSPORT_ERRORS, operation_of


def tag_event(line: bytes, node: Node) -> bytes:
    """Add the node to the event, where `docker events` shows it: the actor's attributes."""
    event: dict[str, Any] = json.loads(line)
    actor = event.setdefault("Actor", {})
    attributes = actor.get("Attributes") or {}
    attributes["node.name"] = node.name
    attributes["node.addr"] = node.address
    actor["Attributes"] = attributes
    event["node"] = {"Name": node.name, "Addr": node.address}
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _bounded_in_past(path: str) -> bool:
    """With an `until` already past, every node sends a finite backlog: it can be sorted."""
    until = parse_qs(urlsplit(path).query).get("until")
    if not until:
        return False
    try:
        return float(until[0]) <= time.time()
    except ValueError:
        return False


class MergedEvents:
    """Open with `open()` (errors surface before any byte goes to the client), then iterate."""

    def __init__(self, cluster: Cluster, path: str) -> None:
        self.cluster = cluster
        self.path = path
        self._stack = contextlib.AsyncExitStack()
        self._streams: list[tuple[Node, aiohttp.ClientResponse]] = []

    async def start(self) -> None:
        async def connect(node: Node) -> aiohttp.ClientResponse:
            response = await self._stack.enter_async_context(node.client.request("GET", self.path))
            if response.status != 200:
                body = await response.json(content_type=None)
                raise DockerError(node_message(body, response.status), response.status)
            return response

        failures: list[BaseException] = []
        for node, result in await self.cluster.fan_out(connect):
            if isinstance(result, aiohttp.ClientResponse):
                self._streams.append((node, result))
            else:
                failures.append(result)
        if not self._streams:
            await self.close()
            for failure in failures:
                if isinstance(failure, DockerError) and not isinstance(failure, NodeUnavailable):
                    raise failure
            raise NoNodeAvailable("no node answered the event stream")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if _bounded_in_past(self.path):
            backlog: list[tuple[int, bytes]] = []
            for node, response in self._streams:
                async for line in self._lines(node, response):
                    backlog.append((json.loads(line).get("timeNano", 0), line))
            backlog.sort(key=lambda pair: pair[0])
            for _, line in backlog:
                yield line
            return
        # None: a node's stream ended; an exception: it broke, and so does the merge.
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=1024)

        async def pump(node: Node, response: aiohttp.ClientResponse) -> None:
            try:
                async for line in self._lines(node, response):
                    await queue.put(line)
            except Exception as e:
                await queue.put(e)
            else:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(n, r)) for n, r in self._streams]
        try:
            open_streams = len(tasks)
            while open_streams:
                item = await queue.get()
                if item is None:
                    open_streams -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _lines(node: Node, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """A node's events, tagged. A broken stream is the node's failure: a client must not
        mistake a merge with one node missing for the whole cluster's events."""
        try:
            async for line in response.content:
                if line.strip():
                    yield tag_event(line, node)
        except (*TRANSPORT_ERRORS, ValueError) as e:
            raise node.client.unavailable(e, operation_of(response)) from e

    async def close(self) -> None:
        await self._stack.aclose()
