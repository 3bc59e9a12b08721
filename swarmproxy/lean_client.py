"""A lean HTTP/1.1 client for a node: short answers read whole on kept-alive connections
of its own, and streamed answers handed on as read, on a connection each.

aiohttp's client costs about 0.14 ms of Python per call on this kind of machine (request and
response objects, timers, its connector's bookkeeping), as much as the daemon takes to
answer an inspect; this one costs a few microseconds. It speaks only what the fast lane
(swarmproxy.api.fast_lane) asks: a request with no body, an answer framed by a length or
in chunks. Any failure is an exception, and the caller falls back on the full path, which
reports it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

# Past this the answer is no short one: the caller takes the full path.
MAX_ANSWER = 4 * 1024 * 1024
# Idle connections kept per node; more at once are opened, and closed after their call.
IDLE_KEPT = 64
CONNECT_TIMEOUT = 10.0


P = TypeVar("P", bound=asyncio.Protocol)


class LeanCallFailed(Exception):
    """The call could not be made or its answer read in the lean way."""


@dataclass(frozen=True)
class Answer:
    status: int
    # The head's header lines as sent, `Name: value` each, without the status line.
    header_lines: list[bytes]
    body: bytes


class _Exchange(asyncio.Protocol):
    """One kept-alive connection; one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._buffer = bytearray()
        self._answer: asyncio.Future[Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Kept for each call's future: asyncio.get_running_loop() costs a getpid() a call.
        self._loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(exc or ConnectionResetError("the node closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            # Nothing was asked: a node speaking out of turn is a connection to drop.
            self.close()
            return
        self._buffer += data
        try:
            answer = _parse(self._buffer)
        except (LeanCallFailed, ValueError) as e:
            self._fail(e)
            self.close()
            return
        if answer is not None:
            self._buffer.clear()
            self._answer.set_result(answer)

    def ask(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._answer = self._loop.create_future()
        self.transport.write(request)
        return self._answer

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(LeanCallFailed(str(error) or type(error).__name__))


@dataclass(frozen=True)
class Head:
    """An answer's status and header lines, and how its body is framed."""

    status: int
    header_lines: list[bytes]
    # The body's length; None when chunked, or when it has none to read (`bodiless`).
    length: int | None
    chunked: bool
    # Where the body starts in what was read.
    start: int

    @property
    def bodiless(self) -> bool:
        return self.status in (204, 304) or 100 <= self.status < 200


def _parse_head(buffer: bytearray) -> Head | None:
    """The answer's head at the start of `buffer` once it is whole, else None; an answer
    that is not kept-alive HTTP/1.1 with a framed body fails."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > 64 * 1024:
            raise LeanCallFailed("answer head too large")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or status_line[1] == b"":
        raise LeanCallFailed("not an HTTP/1.x answer")
    status = int(status_line[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.strip().lower() == b"chunked"
            if not chunked:
                raise LeanCallFailed("a transfer coding other than chunked")
        elif name == b"connection" and value.strip().lower() == b"close":
            raise LeanCallFailed("the node closes the connection after its answer")
    head = Head(status, lines[1:], None if chunked else length, chunked, end + 4)
    if not chunked and length is None and not head.bodiless:
        # Read until the close: no kept connection.
        raise LeanCallFailed("an answer with no length")
    return head


def _parse(buffer: bytearray) -> Answer | None:
    """The answer in `buffer` once it is whole, else None."""
    head = _parse_head(buffer)
    if head is None:
        return None
    start = head.start
    if head.chunked:
        body = _dechunked(buffer, start)
        if body is None:
            return None
    elif head.length is not None:
        if head.length > MAX_ANSWER:
            raise LeanCallFailed("answer too large")
        if len(buffer) < start + head.length:
            return None
        if len(buffer) > start + head.length:
            raise LeanCallFailed("bytes past the answer")
        body = bytes(buffer[start : start + head.length])
    else:
        body = b""
    return Answer(head.status, head.header_lines, body)


def _dechunked(buffer: bytearray, at: int) -> bytes | None:
    """The chunked body from `at`, once its last chunk (and no trailer) has come."""
    parts: list[bytes] = []
    total = 0
    while True:
        size_end = buffer.find(b"\r\n", at)
        if size_end < 0:
            return None
        try:
            size = int(bytes(buffer[at:size_end]).partition(b";")[0], 16)
        except ValueError:
            raise LeanCallFailed("a bad chunk size") from None
        total += size
        if total > MAX_ANSWER:
            raise LeanCallFailed("answer too large")
        data_end = size_end + 2 + size
        if len(buffer) < data_end + 2:
            return None
        if buffer[data_end : data_end + 2] != b"\r\n":
            raise LeanCallFailed("a chunk without its end")
        if size == 0:
            if data_end + 2 != len(buffer):
                raise LeanCallFailed("a trailer or bytes past the answer")
            return b"".join(parts)
        parts.append(bytes(buffer[size_end + 2 : data_end]))
        at = data_end + 2


class Framing:
    """Where a body passed through as it is (chunked framing and all) ends: the chunk
    sizes are read, the data skipped by count, never copied."""

    def __init__(self, head: Head) -> None:
        self._chunked = head.chunked
        # Bytes of the current chunk (with its CRLF) or of the body still to come.
        self._left = 0 if head.chunked else (head.length or 0)
        self._line = b""
        self._trailer = False
        self.done = not head.chunked and self._left == 0

    def feed(self, data: bytes) -> None:
        """Counts `data` in; raises LeanCallFailed for bytes past the end or a bad frame."""
        if self.done:
            if data:
                raise LeanCallFailed("bytes past the answer")
            return
        if not self._chunked:
            self._left -= len(data)
            if self._left < 0:
                raise LeanCallFailed("bytes past the answer")
            self.done = self._left == 0
            return
        at, size = 0, len(data)
        while at < size:
            if self._left:
                taken = min(self._left, size - at)
                self._left -= taken
                at += taken
                continue
            end = data.find(b"\n", at)
            if end < 0:
                self._line += data[at:]
                if len(self._line) > 4096:
                    raise LeanCallFailed("a chunk line too long")
                return
            line = (self._line + data[at:end]).rstrip(b"\r")
            self._line = b""
            at = end + 1
            if self._trailer:
                if not line:
                    self.done = True
                    if at != size:
                        raise LeanCallFailed("bytes past the answer")
                    return
                continue
            try:
                chunk = int(line.partition(b";")[0], 16)
            except ValueError:
                raise LeanCallFailed("a bad chunk size") from None
            if chunk == 0:
                self._trailer = True
            else:
                self._left = chunk + 2


class StreamSink:
    """Where a streamed answer goes: its head once, its body's bytes as they come (framing
    included), then its end, or the failure that cut it."""

    def head(self, head: Head, body_start: bytes) -> None: ...

    def data(self, data: bytes) -> None: ...

    def ended(self, error: LeanCallFailed | None) -> None: ...


class _Streamed(asyncio.Protocol):
    """A connection of its own for one streamed answer, handed to a StreamSink as read."""

    def __init__(self, sink: StreamSink) -> None:
        self._sink = sink
        self._buffer = bytearray()
        self._framing: Framing | None = None
        self._over = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._over:
            return
        try:
            if self._framing is None:
                self._buffer += data
                head = _parse_head(self._buffer)
                if head is None:
                    return
                self._framing = Framing(head)
                rest = bytes(self._buffer[head.start :])
                self._buffer.clear()
                self._framing.feed(rest)
                self._sink.head(head, rest)
            else:
                self._framing.feed(data)
                self._sink.data(data)
        except (LeanCallFailed, ValueError) as e:
            self._end(LeanCallFailed(str(e)))
            return
        if self._framing.done:
            self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._over:
            reason = str(exc) if exc else "the node closed the connection mid-answer"
            self._end(LeanCallFailed(reason or type(exc).__name__))

    def _end(self, error: LeanCallFailed | None) -> None:
        self._over = True
        if self.transport is not None:
            self.transport.close()
        self._sink.ended(error)


class LeanClient:
    """Short calls to one node, on connections of its own."""

    def __init__(
        self,
        host: str,
        port: int,
        socket_path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._socket_path = socket_path
        self._ssl = ssl_context
        self._host_header = f"Host: {'localhost' if socket_path else host}:{port}\r\n".encode()
        self._idle: list[_Exchange] = []

    def _request(self, target: bytes, header_lines: list[bytes]) -> bytes:
        return b"".join(
            [b"GET ", target, b" HTTP/1.1\r\n", self._host_header]
            + [line + b"\r\n" for line in header_lines]
            + [b"\r\n"]
        )

    async def get(self, target: bytes, header_lines: list[bytes]) -> Answer:
        """`GET target` (the path and query, as encoded) with `header_lines` (`Name:
        value`, no Host) and no body; raises LeanCallFailed for anything but a whole
        answer."""
        request = self._request(target, header_lines)
        exchange = await self._exchange()
        try:
            answer = await exchange.ask(request)
        except BaseException:
            # Cancelled or failed halfway: what the connection holds now is unknown.
            exchange.close()
            raise
        if len(self._idle) < IDLE_KEPT and not exchange.lost:
            self._idle.append(exchange)
        else:
            exchange.close()
        return answer

    async def stream(
        self, target: bytes, header_lines: list[bytes], sink: StreamSink
    ) -> asyncio.Transport:
        """`GET target` on a connection of its own, its answer streamed into `sink` as it
        comes; the connection's transport, for the caller to pause, resume or close."""
        streamed = await self._connect(lambda: _Streamed(sink))
        assert streamed.transport is not None
        streamed.transport.write(self._request(target, header_lines))
        return streamed.transport

    async def _exchange(self) -> _Exchange:
        while self._idle:
            kept = self._idle.pop()
            if not kept.lost:
                return kept
        return await self._connect(_Exchange)

    async def _connect(self, factory: Callable[[], P]) -> P:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self._socket_path is not None:
                    _, protocol = await loop.create_unix_connection(factory, self._socket_path)
                else:
                    _, protocol = await loop.create_connection(
                        factory, self._host, self._port, ssl=self._ssl
                    )
        except (OSError, TimeoutError) as e:
            raise LeanCallFailed(str(e) or type(e).__name__) from e
        return protocol

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
