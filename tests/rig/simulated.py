"""SIMULATED nodes, for what real daemons cannot show on this machine: a node that fails
on purpose at a chosen moment. Each is a small aiohttp server on 127.0.0.1 answering as a
test scripts it, wrapped in a real `Node`, so the real node client talks to it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer

from swarmproxy.cluster.node import Node

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def simulated_node(name: str, handler: Handler) -> AsyncIterator[Node]:
    """A SIMULATED node: an aiohttp server answering every request with `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(shutdown_timeout=0.5)
    node = Node(name, f"tcp://127.0.0.1:{server.port}")
    try:
        yield node
    finally:
        await node.client.close()
        await server.close()


@asynccontextmanager
async def simulated_nodes(*handlers: Handler) -> AsyncIterator[list[Node]]:
    """SIMULATED nodes node-1, node-2, ... one per handler."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(simulated_node(f"node-{i}", handler))
            for i, handler in enumerate(handlers, start=1)
        ]


@asynccontextmanager
async def dead_node(name: str) -> AsyncIterator[Node]:
    """A SIMULATED node that is down: a free port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = Node(name, f"tcp://127.0.0.1:{port}")
    try:
        yield node
    finally:
        await node.client.close()
