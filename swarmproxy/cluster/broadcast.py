"""One request sent to several nodes at once (a pull, an import, a load), their JSON-lines
progress merged into one stream that the docker CLI renders, every message naming its node.

A node that fails is reported in the stream by name and the others go on; the whole is an
error only when no node succeeded: before anything was streamed, as the daemon's own error
answer, and after, as a final error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from swarmproxy.cluster.node import Node
from swarmproxy.cluster.streams import Inactive, Tee, chunks, lines
from swarmproxy.errors import DockerError, NodeUnavailable, naming_nodes, node_message
from swarmproxy.log import log_event
from swarmproxy.tasks import shielded

log = logging.getLogger("swarmproxy.cluster")

# Progress messages waiting for the client; a node that gets further ahead waits.
_BACKLOG = 64
NEWLINE = b"\r\n"  # what the daemon's stream formatter ends each message with


def labelled(node: str, message: dict[str, Any]) -> dict[str, Any]:
    """The message with its node in `id`, the field the docker CLI shows first on the line
    and by which it groups progress bars (so the same layer on two nodes gets two bars).
    A node's plain output (`stream`, as in `Loaded image: x:1`) becomes a status line: what
    every node said alike is said once more, unlabelled, at the end (`common_output`), so
    a client that reads the output (docker-py's load, a script) finds it once."""
    ident = message.get("id")
    if "stream" in message:
        text = str(message["stream"]).rstrip("\n")
        message = {k: v for k, v in message.items() if k != "stream"} | {"status": text}
    return {**message, "id": f"{node}: {ident}" if ident else node}


def common_output(results: Sequence[NodeResult]) -> list[str]:
    """The plain output every successful node gave, in the first one's order."""
    said = [r.said for r in results if r.succeeded]
    if not said:
        return []
    return [text for text in said[0] if all(text in other for other in said[1:])]


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + NEWLINE


def parse(line: bytes) -> dict[str, Any]:
    """A node's progress line; anything not a JSON object is carried as plain output."""
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if isinstance(message, dict):
        return message
    return {"stream": line.decode(errors="replace")}


def error_of(message: dict[str, Any]) -> str:
    detail = message.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return str(message.get("error") or "")


@dataclass
class NodeResult:
    node: Node
    # The node's HTTP status; 0 when it gave none.
    status: int = 0
    # Why the node failed; empty when it succeeded.
    error: str = ""
    # The messages the broadcast was asked to keep, for learning what the nodes did.
    kept: list[dict[str, Any]] = field(default_factory=list)
    # The node's plain output (`stream` messages), in order.
    said: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300 and not self.error


def merged_error(results: Sequence[NodeResult]) -> DockerError:
    """One error for the nodes that all failed, naming them, with the daemon's status when
    they agree on one."""
    message = naming_nodes([(r.node.name, r.error) for r in results])
    # A node that never answered failed as a node does (502); one that failed after its
    # 200 reported the daemon's error mid-stream (500).
    statuses = {r.status if r.status >= 400 else 502 if r.status == 0 else 500 for r in results}
    return DockerError(message, statuses.pop() if len(statuses) == 1 else 500)


class Broadcast:
    """Send with `start()`, then iterate for the merged stream; `results` says how each node
    did. `keep` picks the messages worth remembering (an image ID, a loaded tag); `learn` is
    given each node's result as soon as that node has succeeded, whoever reads the stream."""

    def __init__(
        self,
        nodes: Sequence[Node],
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: AsyncIterable[bytes] | None = None,
        inactivity: float | None = None,
        keep: Callable[[dict[str, Any]], bool] = lambda message: False,
        learn: Callable[[NodeResult], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.results = [NodeResult(node) for node in nodes]
        self._method = method
        self._path = path
        self._headers = headers or {}
        self._tee = None if body is None else Tee(body, len(nodes))
        self._inactivity = inactivity
        self._keep = keep
        self._learn = learn
        # Unbounded, so a node's last words (its error, its end) never wait; progress lines
        # take a place in `_room` first, which the reader gives back: the back-pressure.
        self._queue: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()
        self._room = asyncio.Semaphore(_BACKLOG)
        self._streaming = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def succeeded(self) -> list[Node]:
        return [r.node for r in self.results if r.succeeded]

    async def start(self) -> None:
        """Return once some node streams its answer; raise the merged error if none does."""
        if not self.results:
            raise DockerError("no node to send the request to", 503)
        if self._tee is not None:
            self._tasks.append(asyncio.create_task(self._tee.pump(), name="upload-tee"))
        nodes = [asyncio.create_task(self._run(i)) for i in range(len(self.results))]
        self._tasks.extend(nodes)
        streaming: asyncio.Future[Any] = asyncio.ensure_future(self._streaming.wait())
        finished: asyncio.Future[Any] = asyncio.gather(*nodes)
        try:
            await asyncio.wait([streaming, finished], return_when="FIRST_COMPLETED")
        except BaseException:
            await self.close()
            raise
        finally:
            streaming.cancel()
            # Once streaming, nobody awaits the nodes together: their end is read here, so a
            # close() that cancels them is never reported as a lost exception.
            finished.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not self._streaming.is_set():
            await self.close()
            raise merged_error(self.results)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        running = len(self.results)
        while running:
            item = await self._queue.get()
            if item is None:
                running -= 1
                continue
            line, progress = item
            if progress:
                self._room.release()
            yield line
        if self._closed:
            return
        for text in common_output(self.results):
            yield encode({"stream": text})
        if not self.succeeded:
            error = merged_error(self.results).message
            yield encode({"errorDetail": {"message": error}, "error": error})

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, index: int) -> None:
        result = self.results[index]
        node = result.node
        try:
            await self._exchange(index, result)
            if result.succeeded:
                await self._learn_from(result)
        except NodeUnavailable as e:
            result.error = e.message
        except Inactive as e:
            result.error = str(e)
            log_event(log, logging.WARNING, "node stream inactive", node=node.name, error=str(e))
        except Exception as e:
            # One node's surprise must not take the others' streams down with it.
            result.error = str(e) or type(e).__name__
            log.exception("node stream failed", extra={"fields": {"node": node.name}})
        except asyncio.CancelledError:
            # Closed before it finished: never counted as a success, and not reported in a
            # stream that nobody reads any more.
            result.error = "cancelled"
            raise
        finally:
            if self._tee is not None:
                self._tee.drop(index)
            if result.error and result.error != "cancelled":
                report = labelled(node.name, {"status": "Error: " + result.error})
                self._queue.put_nowait((encode(report), False))
            self._queue.put_nowait(None)

    async def _learn_from(self, result: NodeResult) -> None:
        """What the node did goes to the index; an index that cannot take it (storage down)
        is logged, and does not turn the node's success into a failure."""
        if self._learn is None:
            return
        try:
            await shielded(self._learn(result))
        except Exception:
            log.exception("indexing failed", extra={"fields": {"node": result.node.name}})

    async def _exchange(self, index: int, result: NodeResult) -> None:
        """Send to one node and pass its messages on. The daemon sends no head before its
        first progress message, so the silence before the head counts too; an upload still
        flowing to the node is not silence, and once the node has all of it, it may work in
        silence as long as it takes (a quiet `docker load` says nothing until the end)."""
        node = result.node
        loop = asyncio.get_running_loop()
        headed = False
        try:
            async with asyncio.timeout(None) as silence:

                def alive() -> None:
                    if self._inactivity is not None and not headed:
                        silence.reschedule(loop.time() + self._inactivity)

                async def fed(upload: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
                    async for chunk in upload:
                        alive()
                        yield chunk
                    if not headed:
                        silence.reschedule(None)

                alive()
                data = None if self._tee is None else fed(self._tee.reader(index))
                async with node.client.request(
                    self._method, self._path, headers=self._headers, data=data
                ) as response:
                    # The head came: from here the body's own bound on silence applies.
                    headed = True
                    silence.reschedule(None)
                    await self._pass_on(response, result)
        except TimeoutError:
            raise Inactive(self._inactivity or 0) from None

    async def _pass_on(self, response: aiohttp.ClientResponse, result: NodeResult) -> None:
        node = result.node
        result.status = response.status
        if response.status != 200:
            body = b"".join([c async for c in chunks(node, response, self._inactivity)])
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
            result.error = node_message(answer, response.status)
            return
        self._streaming.set()
        async with contextlib.aclosing(lines(chunks(node, response, self._inactivity))) as said:
            async for line in said:
                message = parse(line)
                error = error_of(message)
                if error:
                    result.error = error
                    return
                if self._keep(message):
                    result.kept.append(message)
                if "stream" in message:
                    result.said.append(str(message["stream"]))
                await self._room.acquire()
                self._queue.put_nowait((encode(labelled(node.name, message)), True))
