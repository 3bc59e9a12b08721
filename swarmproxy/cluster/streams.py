"""How a node's streamed answer is read: in chunks or in lines, with a bound on silence, and
how one upload is fed to several nodes at once. The one place for pumping node streams in
the cluster core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

import aiohttp

from swarmproxy.cluster.node import Node
from swarmproxy.node_client import TRANSPORT_ERRORS, BodyFailed, operation_of

CHUNK = 256 * 1024


class Inactive(Exception):
    """A node said nothing for longer than allowed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no progress for {seconds:g}s, given up")


async def chunks(
    node: Node, response: aiohttp.ClientResponse, inactivity: float | None = None
) -> AsyncGenerator[bytes, None]:
    """The body as it arrives. A transport failure is the node's (NodeUnavailable); a node
    silent for `inactivity` seconds raises Inactive."""
    while True:
        try:
            async with asyncio.timeout(inactivity):
                chunk = await response.content.read(CHUNK)
        except TimeoutError as e:
            raise Inactive(inactivity or 0) from e
        except TRANSPORT_ERRORS as e:
            raise node.client.unavailable(e, operation_of(response)) from e
        if not chunk:
            return
        yield chunk


async def lines(source: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """Whole lines, each with its newline; no length limit, as a build step may print a long
    one. A last line without a newline is yielded as it is."""
    buffer = bytearray()
    async for chunk in source:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            yield bytes(buffer[start : end + 1])
            start = end + 1
        del buffer[:start]
    if buffer:
        yield bytes(buffer)


class _Failed:
    """Put in the readers' queues when the source broke: a node must see a cut upload, never
    a short one that looks complete."""


class Tee:
    """One upload fed to several readers (one per node) at once, never held whole: the next
    chunk is read from the source only when every live reader has room for it, so the
    slowest node sets the pace. A reader whose node failed is dropped, not waited for."""

    def __init__(self, source: AsyncIterable[bytes], readers: int, depth: int = 4) -> None:
        self._source = source
        self._queues: list[asyncio.Queue[bytes | _Failed | None]] = [
            asyncio.Queue(depth) for _ in range(readers)
        ]
        self._live = [True] * readers

    def reader(self, index: int) -> AsyncIterator[bytes]:
        queue = self._queues[index]

        async def read() -> AsyncIterator[bytes]:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, _Failed):
                    raise BodyFailed("the upload was cut short")
                yield item

        return read()

    def drop(self, index: int) -> None:
        self._live[index] = False
        queue = self._queues[index]
        # Empty it, so that a pump blocked on this reader's full queue moves on.
        while not queue.empty():
            queue.get_nowait()

    async def _put(self, item: bytes | _Failed | None) -> bool:
        live = [q for q, alive in zip(self._queues, self._live, strict=True) if alive]
        await asyncio.gather(*(q.put(item) for q in live))
        return bool(live)

    async def pump(self) -> None:
        try:
            async for chunk in self._source:
                if not await self._put(chunk):
                    return
        except BaseException:
            for index, queue in enumerate(self._queues):
                if self._live[index]:
                    self.drop(index)
                    queue.put_nowait(_Failed())
            raise
        await self._put(None)
