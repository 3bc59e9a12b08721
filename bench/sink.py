"""A server that answers every request with a canned `OK`, as fast as it can:
`python -m bench.sink` writes its port on stdout, then serves until stopped.

Driving it shows how many requests per second the measuring client can make on this box,
which must stay well above what dockerd answers for the client not to be the bottleneck.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

import uvloop

_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Api-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
)


class _Canned(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they behave as such.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        # Requests without a body: one answer per blank line that ends a head.
        buffered = self.pending + data
        heads = buffered.count(b"\r\n\r\n")
        self.pending = buffered[buffered.rfind(b"\r\n\r\n") + 4 :] if heads else buffered
        if heads:
            self.transport.write(_ANSWER * heads)


async def serve_on_loopback(factory: Callable[[], asyncio.Protocol]) -> None:
    """Serve `factory`'s protocol on a free loopback port, written on stdout, until SIGTERM:
    how the bench's helper servers (this one, bench.relay) run."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def run(server: Coroutine[Any, Any, None]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    uvloop.run(server)


if __name__ == "__main__":
    run(serve_on_loopback(_Canned))
