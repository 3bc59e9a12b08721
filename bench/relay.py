"""A bare TCP relay in front of one node: `python -m bench.relay HOST PORT` writes its own port
on stdout, then, for every connection it accepts, opens one to the node and copies bytes
both ways until either side closes. It parses nothing and decides nothing.

Measured beside the node and the proxy, it shows what the extra hop costs by itself on this
machine (two more socket round trips, and a process woken twice per request), which no
proxy in front of a daemon can go below, whatever its language.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import cast

from bench.sink import run, serve_on_loopback


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early = bytearray()
        self.connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they behave as such.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early += data

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


def relaying_to(host: str, port: int) -> Callable[[], asyncio.Protocol]:
    """A factory of client sides, each connecting its node side to HOST:PORT."""

    def accepted() -> _Side:
        client = _Side()

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            try:
                _, node = await loop.create_connection(_Side, host, port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            node.peer, client.peer = client, node
            if client.early:
                node.transport.write(bytes(client.early))  # type: ignore[union-attr]
                client.early.clear()

        client.connecting = asyncio.get_running_loop().create_task(connect())
        return client

    return accepted


if __name__ == "__main__":
    run(serve_on_loopback(relaying_to(sys.argv[1], int(sys.argv[2]))))
