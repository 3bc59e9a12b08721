"""Hijacked connections (attach, exec start): after the node's `101 UPGRADED`, raw bytes are
pumped both ways between the client's socket and a fresh socket to the node.

aiohttp's server protocol closes a connection when the client half-closes it, but a half-close
is how a client says "stdin is done" while it still waits for the output. So after the 101 the
client's socket is handed to a protocol of our own, which passes the half-close to the node
and keeps relaying output until the node closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from multidict import CIMultiDict

from swarmproxy.api.context import read_body, target_of
from swarmproxy.api.forward import HOP_BY_HOP, NODE_KEY, filtered, forward
from swarmproxy.cluster.node import Node
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS, operation

log = logging.getLogger("swarmproxy.hijack")

CHUNK = 256 * 1024
# Bytes queued towards the node (or the client) before we stop reading from the other side.
NODE_BUFFER_LIMIT = 1024 * 1024
HEAD_LIMIT = 64 * 1024


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


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, CIMultiDict[str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    _, status, reason = [*status_line.split(" ", 2), ""][:3]
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return int(status), reason, headers


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


class _ClientSide(asyncio.Protocol):
    """The client's socket once hijacked: input goes to the node, EOF becomes the node's EOF."""

    def __init__(
        self,
        original: asyncio.BaseProtocol,
        transport: asyncio.Transport,
        node_writer: asyncio.StreamWriter,
    ) -> None:
        self.original = original
        self.transport = transport
        self.node_writer = node_writer
        self.lost = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._resuming: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.node_writer.is_closing():
            return
        self.node_writer.write(data)
        if (
            self.node_writer.transport.get_write_buffer_size() > NODE_BUFFER_LIMIT
            and self._resuming is None
        ):
            self.transport.pause_reading()
            self._resuming = asyncio.create_task(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        try:
            await self.node_writer.drain()
        except TRANSPORT_ERRORS:
            return
        finally:
            self._resuming = None
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        if not self.node_writer.is_closing() and self.node_writer.can_write_eof():
            self.node_writer.write_eof()
        # Keep the connection: the output still has to reach the client.
        return True

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def writable(self) -> None:
        await self._writable.wait()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._writable.set()
        if self._resuming is not None:
            self._resuming.cancel()
        # aiohttp's protocol still owns the request's bookkeeping: let it finish.
        self.original.connection_lost(exc)


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
    try:
        writer.write(_request_head(request, path, len(body)) + body)
        await writer.drain()
        status, reason, headers = await _read_head(reader)
        if status != 101:
            payload = await _read_body(reader, headers)
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
    if status != 101:
        writer.close()
        answer = web.Response(status=status, reason=reason, body=payload, headers=filtered(headers))
        answer[NODE_KEY] = node
        return answer

    out = web.StreamResponse(status=101, reason=reason or "UPGRADED")
    out.headers.extend(filtered(headers))
    out.headers["Connection"] = "Upgrade"
    out.headers["Upgrade"] = "tcp"
    out[NODE_KEY] = node
    out.force_close()
    try:
        await out.prepare(request)
        await out.write_eof()
        await _pump(request, reader, writer, node)
    finally:
        writer.close()
    return out


async def _pump(
    request: web.Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    node: Node,
) -> None:
    transport = cast(asyncio.Transport, request.transport)
    if transport is None or transport.is_closing():
        return
    tail = _TailCollector()
    request.protocol.set_parser(cast(Any, tail))
    client = _ClientSide(transport.get_protocol(), transport, writer)
    transport.set_protocol(client)
    # The default 64 KiB would pause the node's output every few reads.
    transport.set_write_buffer_limits(high=NODE_BUFFER_LIMIT)
    if tail.data:
        writer.write(bytes(tail.data))
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data or transport.is_closing():
                break
            transport.write(data)
            await client.writable()
    except TRANSPORT_ERRORS as e:
        log_event(
            log,
            logging.WARNING,
            "hijacked stream cut",
            node=node.name,
            error=str(e) or type(e).__name__,
        )
    finally:
        # Flushes what is buffered, then closes: the client reads the output to its end.
        transport.close()
