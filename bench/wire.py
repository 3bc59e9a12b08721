"""HTTP/1.1 on raw sockets: requests as bytes, and an incremental response reader that
counts body bytes without keeping them.

The measuring client must cost far less than what it measures, so nothing here builds
objects per body byte: chunked bodies are skipped by length, not copied.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import urlsplit

RECV_BUFFER = 256 * 1024


class ProtocolError(Exception):
    pass


def host_port(url: str) -> tuple[str, int]:
    """`tcp://HOST:PORT` or `http://HOST:PORT` to (HOST, PORT)."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"expected tcp://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port


def http_url(url: str) -> str:
    host, port = host_port(url)
    return f"http://{host}:{port}"


def request_bytes(
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A whole request; a body that is not bytes is sent as JSON."""
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: docker", "User-Agent: swarmproxy-bench"]
    if body is not None:
        if not isinstance(body, bytes):
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(data)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_EOF = range(7)


class ResponseReader:
    """Reads one response from the bytes fed to it. After a 101 the reader is done at the end
    of the head; what follows belongs to the upgraded stream (`feed` says where it starts)."""

    def __init__(self, keep_body: bool = False) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body_bytes = 0
        self.body = bytearray() if keep_body else None
        self.done = False
        self._state = _HEAD
        self._pending = bytearray()
        self._remaining = 0

    def feed(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
        """Consumes data[start:end] up to the end of the response; where it stopped."""
        pos = start
        end = len(data) if end is None else end
        while pos < end and not self.done:
            state = self._state
            if state == _HEAD:
                pos = self._feed_head(data, pos, end)
            elif state in (_LENGTH, _CHUNK_DATA, _UNTIL_EOF):
                take = end - pos if state == _UNTIL_EOF else min(self._remaining, end - pos)
                if self.body is not None:
                    self.body += data[pos : pos + take]
                self.body_bytes += take
                pos += take
                if state != _UNTIL_EOF:
                    self._remaining -= take
                    if self._remaining == 0:
                        if state == _LENGTH:
                            self.done = True
                        else:
                            self._state = _CHUNK_END
            else:
                newline = data.find(b"\n", pos, end)
                if newline < 0:
                    self._pending += data[pos:end]
                    return end
                line = bytes(self._pending) + bytes(data[pos:newline])
                self._pending.clear()
                pos = newline + 1
                self._line(line.strip())
        return pos

    def _feed_head(self, data: bytes | bytearray, pos: int, end: int) -> int:
        already = len(self._pending)
        self._pending += data[pos:end]
        found = self._pending.find(b"\r\n\r\n", max(0, already - 3))
        if found < 0:
            return end
        head = bytes(self._pending[:found])
        self._pending.clear()
        self._parse_head(head)
        return pos + found + 4 - already

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status == 101 or self.status in (204, 304) or 100 <= self.status < 200:
            self.done = True
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in self.headers:
            self._remaining = int(self.headers["content-length"])
            self._state = _LENGTH
            self.done = self._remaining == 0
        else:
            self._state = _UNTIL_EOF

    def _line(self, line: bytes) -> None:
        if self._state == _CHUNK_SIZE:
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                self._state = _TRAILER
            else:
                self._remaining = size
                self._state = _CHUNK_DATA
        elif self._state == _CHUNK_END:
            if line:
                raise ProtocolError(f"expected CRLF after a chunk, got {line[:40]!r}")
            self._state = _CHUNK_SIZE
        elif not line:  # the blank line that ends the trailer
            self.done = True

    def eof(self) -> None:
        """The peer closed: fine only for a body that runs to the end of the connection."""
        if self._state == _UNTIL_EOF:
            self.done = True
        if not self.done:
            raise ProtocolError(
                f"connection closed mid-response (status {self.status}, "
                f"{self.body_bytes} body bytes read)"
            )


class FrameCounter:
    """Counts the payload of Docker's multiplexed stream (8-byte header: stream, 0, 0, 0,
    big-endian size) without keeping it."""

    def __init__(self) -> None:
        self.payload = 0
        self.frames = 0
        self._header = bytearray()
        self._remaining = 0

    def feed(self, data: bytes | bytearray | memoryview, start: int, end: int) -> None:
        pos = start
        while pos < end:
            if self._remaining:
                take = min(self._remaining, end - pos)
                self.payload += take
                self._remaining -= take
                pos += take
                continue
            need = 8 - len(self._header)
            self._header += data[pos : pos + need]
            pos += min(need, end - pos)
            if len(self._header) == 8:
                self._remaining = int.from_bytes(self._header[4:8], "big")
                self.frames += 1
                self._header.clear()


async def connect(url: str) -> socket.socket:
    host, port = host_port(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def read_response(
    sock: socket.socket, buffer: bytearray, reader: ResponseReader
) -> tuple[int, int]:
    """Receives into `buffer` until `reader` has the whole response (for a 101, its head);
    the slice buffer[start:end] of the last receive that comes after it."""
    loop = asyncio.get_running_loop()
    view = memoryview(buffer)
    while True:
        n = await loop.sock_recv_into(sock, view)
        if n == 0:
            reader.eof()
            return 0, 0
        pos = reader.feed(buffer, 0, n)
        if reader.done:
            return pos, n
