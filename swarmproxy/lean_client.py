"""A lean HTTP/1.1 client for a node's short answers: kept-alive connections of its own,
each a small asyncio protocol that reads one answer whole.

aiohttp's client costs about 0.14 ms of Python per call on this kind of machine (request and
response objects, timers, its connector's bookkeeping), as much as the daemon takes to
answer an inspect; this one costs a few microseconds. It speaks only what the fast lane
(swarmproxy.api.fast_lane) asks: a request with no body, an answer read whole. Any
failure is an exception, and the caller falls back on the full path, which reports it.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

# Past this the answer is no short one: the caller takes the full path.
MAX_ANSWER = 4 * 1024 * 1024
# Idle connections kept per node; more at once are opened, and closed after their call.
IDLE_KEPT = 64
CONNECT_TIMEOUT = 10.0


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


def _parse(buffer: bytearray) -> Answer | None:
    """The answer in `buffer` once it is whole, else None."""
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
    start = end + 4
    if chunked:
        body = _dechunked(buffer, start)
        if body is None:
            return None
    elif length is not None:
        if length > MAX_ANSWER:
            raise LeanCallFailed("answer too large")
        if len(buffer) < start + length:
            return None
        if len(buffer) > start + length:
            raise LeanCallFailed("bytes past the answer")
        body = bytes(buffer[start : start + length])
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        # Read until the close: no kept connection.
        raise LeanCallFailed("an answer with no length")
    return Answer(status, lines[1:], body)


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

    async def get(self, target: bytes, header_lines: list[bytes]) -> Answer:
        """`GET target` (the path and query, as encoded) with `header_lines` (`Name:
        value`, no Host) and no body; raises LeanCallFailed for anything but a whole
        answer."""
        request = b"".join(
            [b"GET ", target, b" HTTP/1.1\r\n", self._host_header]
            + [line + b"\r\n" for line in header_lines]
            + [b"\r\n"]
        )
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

    async def _exchange(self) -> _Exchange:
        while self._idle:
            kept = self._idle.pop()
            if not kept.lost:
                return kept
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self._socket_path is not None:
                    _, exchange = await loop.create_unix_connection(_Exchange, self._socket_path)
                else:
                    _, exchange = await loop.create_connection(
                        _Exchange, self._host, self._port, ssl=self._ssl
                    )
        except (OSError, TimeoutError) as e:
            raise LeanCallFailed(str(e) or type(e).__name__) from e
        return exchange

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
