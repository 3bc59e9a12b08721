"""Dry mode's nodes: copies of the real ones whose client never calls a daemon. Anything
that would reach one fails loudly instead, so a plan can never touch the real cluster."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import aiohttp

from swarmproxy.cluster.health import NodeHealth
from swarmproxy.cluster.node import Node
from swarmproxy.errors import DockerError
from swarmproxy.node_client import NodeClient, operation
from swarmproxy.tls import NodeTLS


class DryModeCall(DockerError):
    """Something asked a node for an answer in dry mode, where no daemon is called."""

    def __init__(self, node: str, what: str) -> None:
        super().__init__(f"dry mode: node {node} is not called ({what})", 500)


class DryNodeClient(NodeClient):
    # No session, no connection: nothing here can reach the daemon.
    def __init__(
        self, name: str, address: str, health: NodeHealth, tls: NodeTLS | None = None
    ) -> None:
        self.name = name
        self.address = address
        self.health = health
        self.ssl_context = None
        self.socket_path = None

    def _refuse(self, what: str) -> NoReturn:
        raise DryModeCall(self.name, what)

    @asynccontextmanager
    async def request(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        self._refuse(operation(method, path))
        yield

    async def open_raw(self, purpose: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self._refuse(purpose)

    async def version(self, timeout: float) -> dict[str, Any]:
        self._refuse("GET /version")

    async def info(self, timeout: float) -> dict[str, Any]:
        self._refuse("GET /info")

    async def close(self) -> None:
        pass


def dry_copy(node: Node) -> Node:
    """The node as it is now (labels, health, versions), with a client that calls nothing."""
    return dataclasses.replace(
        node,
        labels=dict(node.labels),
        health=copy.copy(node.health),
        info=dict(node.info),
        load=copy.deepcopy(node.load),
        client_class=DryNodeClient,
    )
