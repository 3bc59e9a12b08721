"""Throughput of one stream, measured from the client's side on raw sockets: a response body
read to its end (logs, export), and bytes piped through a hijacked connection (attach, exec
start) and read back.

These run in the worker process (bench/worker.py), never beside the harness's own work.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from bench.wire import RECV_BUFFER, FrameCounter, ResponseReader, connect, read_response
from bench.wire import request_bytes as build_request

STREAM_TIMEOUT = 300.0
_SEND_CHUNK = 1 << 20


@dataclass
class BodySpec:
    url: str
    path: str


@dataclass
class BodyResult:
    status: int
    body_bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.body_bytes / self.seconds / 1e6


async def read_body(spec: BodySpec) -> BodyResult:
    """GET `path` and read the body to its end; timed from sending to the last byte."""
    sock = await connect(spec.url)
    try:
        async with asyncio.timeout(STREAM_TIMEOUT):
            loop = asyncio.get_running_loop()
            buffer = bytearray(RECV_BUFFER)
            reader = ResponseReader()
            started = time.perf_counter()
            await loop.sock_sendall(sock, build_request("GET", spec.path))
            await read_response(sock, buffer, reader)
            seconds = time.perf_counter() - started
    finally:
        sock.close()
    return BodyResult(status=reader.status, body_bytes=reader.body_bytes, seconds=seconds)


@dataclass
class PipeSpec:
    url: str
    method: str
    path: str
    body: Any
    send_bytes: int


@dataclass
class PipeResult:
    status: int
    sent: int
    received: int
    frames: int
    seconds: float
    error: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.received / self.seconds / 1e6 if self.seconds > 0 else 0.0


async def pipe_hijacked(spec: PipeSpec) -> PipeResult:
    """Upgrades the connection, sends `send_bytes` while reading the multiplexed output back,
    half-closes (stdin EOF), and reads until the peer closes. Timed from the first byte sent
    to the last one received."""
    loop = asyncio.get_running_loop()
    headers = {"Connection": "Upgrade", "Upgrade": "tcp"}
    sock = await connect(spec.url)
    try:
        async with asyncio.timeout(STREAM_TIMEOUT):
            buffer = bytearray(RECV_BUFFER)
            reader = ResponseReader(keep_body=True)
            request = build_request(spec.method, spec.path, spec.body, headers)
            await loop.sock_sendall(sock, request)
            start, end = await read_response(sock, buffer, reader)
            if reader.status != 101:
                body = bytes(reader.body or b"")[:300].decode("utf-8", "replace")
                return PipeResult(reader.status, 0, 0, 0, 0.0, f"no upgrade: {body}")
            frames = FrameCounter()
            frames.feed(buffer, start, end)
            started = time.perf_counter()
            progress = _Progress()
            sender = asyncio.create_task(_send(sock, spec.send_bytes, progress))
            try:
                await _receive(sock, buffer, frames)
            finally:
                if not sender.done():
                    sender.cancel()
            seconds = time.perf_counter() - started
            error = ""
            if sender.cancelled():
                error = f"the stream ended after {progress.sent} of {spec.send_bytes} bytes sent"
            else:
                sender.result()  # the sender's own failure, if it had one
    finally:
        sock.close()
    if not error and frames.payload != progress.sent:
        error = f"sent {progress.sent} bytes, got {frames.payload} back"
    return PipeResult(101, progress.sent, frames.payload, frames.frames, seconds, error)


@dataclass
class _Progress:
    sent: int = 0


async def _send(sock: socket.socket, total: int, progress: _Progress) -> None:
    loop = asyncio.get_running_loop()
    # Random bytes: nothing on the way may take a shortcut on repetitive data.
    chunk = os.urandom(_SEND_CHUNK)
    while progress.sent < total:
        piece = chunk if total - progress.sent >= len(chunk) else chunk[: total - progress.sent]
        await loop.sock_sendall(sock, piece)
        progress.sent += len(piece)
    sock.shutdown(socket.SHUT_WR)


async def _receive(sock: socket.socket, buffer: bytearray, frames: FrameCounter) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(buffer)
    while True:
        n = await loop.sock_recv_into(sock, view)
        if n == 0:
            return
        frames.feed(buffer, 0, n)
