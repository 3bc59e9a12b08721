"""Hijacked connections (attach, exec start): after the node's `101 UPGRADED`, raw bytes are
pumped both ways between the client's socket and a fresh socket to the node.

aiohttp's server protocol closes a connection when the client half-closes it, but a half-close
is how a client says "stdin is done" while it still waits for the output. So after the 101
both sockets get protocols of our own, which pass the half-close to the node and keep
relaying output until the node closes. Each protocol writes what it receives straight to the
other socket's transport, and stops its own socket's reading while that transport's buffer
is full: no task, queue or copy of ours in between, and a slow side throttles the other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple, cast

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import Counter

from swarmproxy import metrics
from swarmproxy.api.context import read_body, target_of
from swarmproxy.api.forward import HOP_BY_HOP, NODE_KEY, filtered, forward
from swarmproxy.cluster.node import Node
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS, operation

log = logging.getLogger("swarmproxy.hijack")

# Bytes queued towards either side before reading from the other stops. The transports'
# 64 KiB default would pause the output every few reads.
BUFFER_LIMIT = 1024 * 1024


def wants_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "tcp"


def _request_head(request: web.Request, path: str, body_length: int) -> bytes:
    """Built from the client's raw header bytes: whatever they hold goes through untouched."""
    lines = [f"{request.method} {path} HTTP/1.1".encode(), b"Host: docker"]
    lines.extend(
        name + b": " + value
        for name, value in request.raw_headers
        if name.decode("latin-1").lower() not in HOP_BY_HOP
    )
    lines += [b"Connection: Upgrade", b"Upgrade: tcp", f"Content-Length: {body_length}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Head(NamedTuple):
    status: int
    reason: str
    headers: CIMultiDict[str]
    # Bytes of the head, its blank line included.
    size: int


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    _, status, reason = [*status_line.split(" ", 2), ""][:3]
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return _Head(int(status), reason, headers, len(raw))


async def _read_body(reader: asyncio.StreamReader, headers: CIMultiDict[str]) -> bytes:
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = headers.get("Content-Length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read()


class _TailCollector:
    """Takes the bytes aiohttp buffered after the request, before the socket is ours."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


class _End(asyncio.Protocol):
    """One socket of a hijacked stream being pumped: what it receives goes out on `peer`'s
    transport, and while its own transport holds more than BUFFER_LIMIT, `peer` stops
    reading. Either socket closing ends the stream."""

    peer: _End
    # The bytes this socket receives, counted on their way to the other.
    relayed: Counter

    def __init__(self, transport: asyncio.Transport, ended: asyncio.Future[None]) -> None:
        self.transport = transport
        self.ended = ended

    def data_received(self, data: bytes) -> None:
        if not self.peer.transport.is_closing():
            self.relayed.inc(len(data))
            self.peer.transport.write(data)

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.end()

    def end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


class _ClientEnd(_End):
    """The client's socket once hijacked: its EOF (stdin is done) becomes the node's EOF."""

    relayed = metrics.TO_NODE_BYTES

    def __init__(
        self,
        transport: asyncio.Transport,
        ended: asyncio.Future[None],
        original: asyncio.BaseProtocol,
    ) -> None:
        super().__init__(transport, ended)
        self.original = original

    def eof_received(self) -> bool:
        node = self.peer.transport
        if not node.is_closing() and node.can_write_eof():
            node.write_eof()
        # Keep the connection: the output still has to reach the client.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.end()
        # aiohttp's protocol still owns the request's bookkeeping: let it finish.
        self.original.connection_lost(exc)


class _NodeEnd(_End):
    """The node's socket. Until the pumping starts, what happens on it goes to the stream
    reader's protocol it was opened with (the answer's head is read there), and the bytes
    received are counted: the output that came right behind a 101 is taken back from the
    reader by that count."""

    relayed = metrics.TO_CLIENT_BYTES

    def __init__(
        self,
        transport: asyncio.Transport,
        ended: asyncio.Future[None],
        node: Node,
    ) -> None:
        super().__init__(transport, ended)
        self.node = node
        self.opening: asyncio.Protocol | None = cast(asyncio.Protocol, transport.get_protocol())
        self.received = 0
        transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        if self.opening is None:
            super().data_received(data)
        else:
            self.received += len(data)
            self.opening.data_received(data)

    def eof_received(self) -> bool | None:
        if self.opening is not None:
            return self.opening.eof_received()
        # The output is done: the stream ends, flushed to the client first.
        self.end()
        return True

    def pause_writing(self) -> None:
        if self.opening is None:
            super().pause_writing()
        else:
            self.opening.pause_writing()

    def resume_writing(self) -> None:
        if self.opening is None:
            super().resume_writing()
        else:
            self.opening.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.opening is not None:
            self.opening.connection_lost(exc)
            return
        if exc is not None:
            self.cut(exc)
        self.end()

    def cut(self, error: BaseException) -> None:
        log_event(
            log,
            logging.WARNING,
            "hijacked stream cut",
            node=self.node.name,
            error=str(error) or type(error).__name__,
        )


async def hijacked_stream(request: web.Request) -> web.StreamResponse:
    """attach and exec start: hijacked when the client asks to upgrade (the docker CLI,
    docker-py), otherwise a plain stream read until the node closes it."""
    target = target_of(request)
    if wants_upgrade(request):
        return await hijack(request, target.node, target.path)
    return await forward(request, target.node, target.path)


async def hijack(request: web.Request, node: Node, path: str) -> web.StreamResponse:
    body = await read_body(request)
    reader, writer = await node.client.open_raw(operation(request.method, path))
    node_end = _NodeEnd(
        cast(asyncio.Transport, writer.transport), asyncio.get_running_loop().create_future(), node
    )
    try:
        writer.write(_request_head(request, path, len(body)) + body)
        await writer.drain()
        head = await _read_head(reader)
        if head.status != 101:
            payload = await _read_body(reader, head.headers)
    except (
        *TRANSPORT_ERRORS,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ValueError,
    ) as e:
        writer.close()
        raise node.client.unavailable(e, operation(request.method, path)) from e
    except BaseException:
        writer.close()
        raise
    if head.status != 101:
        writer.close()
        answer = web.Response(
            status=head.status, reason=head.reason, body=payload, headers=filtered(head.headers)
        )
        answer[NODE_KEY] = node
        return answer

    out = web.StreamResponse(status=101, reason=head.reason or "UPGRADED")
    out.headers.extend(filtered(head.headers))
    out.headers["Connection"] = "Upgrade"
    out.headers["Upgrade"] = "tcp"
    out[NODE_KEY] = node
    out.force_close()
    try:
        await out.prepare(request)
        await out.write_eof()
        await _pump(request, reader, node_end, head.size)
    finally:
        writer.close()
    return out


async def _pump(
    request: web.Request, reader: asyncio.StreamReader, node_end: _NodeEnd, head_size: int
) -> None:
    transport = cast(asyncio.Transport, request.transport)
    if transport is None or transport.is_closing():
        return
    try:
        # All the reader holds: it returns at once, before anything more can arrive.
        output = await reader.readexactly(node_end.received - head_size)
    except TRANSPORT_ERRORS as e:
        node_end.cut(e)
        transport.close()
        return
    tail = _TailCollector()
    request.protocol.set_parser(cast(Any, tail))
    client = _ClientEnd(transport, node_end.ended, transport.get_protocol())
    transport.set_protocol(client)
    client.peer, node_end.peer = node_end, client
    node_end.opening = None
    transport.set_write_buffer_limits(high=BUFFER_LIMIT)
    if output:
        metrics.TO_CLIENT_BYTES.inc(len(output))
        transport.write(output)
    if reader.at_eof() or node_end.transport.is_closing():
        # The node was done before the pumping started: all it said is in `output`.
        node_end.end()
    else:
        node_end.transport.set_write_buffer_limits(high=BUFFER_LIMIT)
        if tail.data:
            metrics.TO_NODE_BYTES.inc(len(tail.data))
            node_end.transport.write(bytes(tail.data))
    try:
        with metrics.HIJACKED.track_inprogress():
            await node_end.ended
    finally:
        # Flushes what is buffered, then closes: the client reads the output to its end.
        transport.close()
