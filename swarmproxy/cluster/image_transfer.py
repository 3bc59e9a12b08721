"""Bringing an image to the node that needs it: streamed from a node that holds it (its
`docker save` piped into the other's `docker load`, chunk by chunk, never held whole), or
pulled there; and one such transfer at a time per node and image."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

import aiohttp

from swarmproxy.cluster.broadcast import Broadcast, error_of, merged_error, parse
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.streams import chunks, lines
from swarmproxy.errors import NodeUnavailable, naming_nodes, node_message
from swarmproxy.node_client import BodyFailed, decoded


class CopyFailed(Exception):
    """A copy that failed, with the node at fault (the holder or the target), which the
    message names."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def failed_on(node: Node, reason: str) -> CopyFailed:
    return CopyFailed(node, naming_nodes([(node.name, reason)]))


async def copy_image(
    holder: Node, target: Node, save_path: str, load_path: str, inactivity: float
) -> None:
    """Stream the tar that `save_path` makes on `holder` into `load_path` on `target`, at the
    pace of the slower of the two. While the tar flows, a silence of `inactivity` seconds
    on either side fails the copy, blamed on the side it waits for; once the target has it
    all, it loads as long as it takes, silently (a quiet load answers only when done). The
    target sees a failure of the holder as a cut upload, never as a short tar that looks
    whole, and that failure is not counted against the target's health."""
    loop = asyncio.get_running_loop()
    waiting_on = holder
    cut: NodeUnavailable | None = None
    try:
        async with asyncio.timeout(inactivity) as silence:

            async def tar(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
                nonlocal waiting_on, cut
                try:
                    async for chunk in chunks(holder, response):
                        waiting_on = target
                        silence.reschedule(loop.time() + inactivity)
                        yield chunk
                        waiting_on = holder
                except NodeUnavailable as e:
                    cut = e
                    raise BodyFailed(e.message) from e
                waiting_on = target
                silence.reschedule(None)

            async with holder.client.request("GET", save_path) as saved:
                if saved.status != 200:
                    raise failed_on(holder, await _refusal(holder, saved))
                async with target.client.request(
                    "POST",
                    load_path,
                    headers={"Content-Type": "application/x-tar"},
                    data=tar(saved),
                ) as loaded:
                    await _read_load(target, loaded)
    except TimeoutError:
        raise failed_on(waiting_on, f"no progress for {inactivity:g}s, given up") from None
    except NodeUnavailable as e:
        if cut is not None:
            raise CopyFailed(holder, cut.message) from e
        raise CopyFailed(holder if e.node_name == holder.name else target, e.message) from e


async def _read_load(target: Node, response: aiohttp.ClientResponse) -> None:
    """Read a load's answer to its end: the daemon answers 200 before it has loaded
    anything, and says in the stream whether the load failed."""
    if response.status != 200:
        raise failed_on(target, await _refusal(target, response))
    async with contextlib.aclosing(lines(chunks(target, response))) as said:
        async for line in said:
            error = error_of(parse(line))
            if error:
                raise failed_on(target, error)


async def _refusal(node: Node, response: aiohttp.ClientResponse) -> str:
    body = b"".join([chunk async for chunk in chunks(node, response)])
    try:
        return node_message(decoded(body, response.status), response.status)
    except ValueError:
        return f"status {response.status}"


async def finish(broadcast: Broadcast) -> None:
    """Run a broadcast to its end with nobody reading its progress; raise the nodes' error
    unless one of them succeeded."""
    try:
        await broadcast.start()
        async for _ in broadcast:
            pass
    finally:
        await broadcast.close()
    if not broadcast.succeeded:
        raise merged_error(broadcast.results)


@dataclass
class _Run:
    task: asyncio.Task[None]
    callers: int = 0


class InFlight:
    """Work run once per key at a time: whoever asks for a key while its work runs awaits
    that run and shares its outcome. The work goes on while anyone still awaits it, and is
    cancelled when the last of them leaves, so none is left behind unowned."""

    def __init__(self) -> None:
        self._runs: dict[Hashable, _Run] = {}

    async def join(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        run = self._runs.get(key)
        if run is None:
            run = self._start(key, work())
        run.callers += 1
        try:
            await asyncio.shield(run.task)
        finally:
            run.callers -= 1
            if not run.callers and not run.task.done():
                # Forgotten now, not once the cancel lands: a caller coming meanwhile must
                # start afresh rather than join a run that is ending.
                self._forget(key, run)
                run.task.cancel()

    def _start(self, key: Hashable, work: Coroutine[Any, Any, None]) -> _Run:
        run = _Run(asyncio.create_task(work))
        self._runs[key] = run
        run.task.add_done_callback(lambda _: self._forget(key, run))
        # Its outcome fetched, so that a run left by every caller is never reported lost.
        run.task.add_done_callback(lambda task: task.cancelled() or task.exception())
        return run

    def _forget(self, key: Hashable, run: _Run) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]
