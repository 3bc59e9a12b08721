"""What a handler gets beside its request: the cluster, and the target the router resolved."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from swarmproxy.cluster import Cluster, Node
from swarmproxy.config import Config

CLUSTER = web.AppKey("cluster", Cluster)
CONFIG = web.AppKey("config", Config)
TARGET_KEY = "swarmproxy.target"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Target:
    """Where a request for one container or exec goes."""

    node: Node
    # The resolved full container ID, or the exec ID.
    id: str
    # The path to send to the node: the version prefix, the full ID, the query string.
    path: str


def cluster_of(request: web.Request) -> Cluster:
    return request.app[CLUSTER]


def endpoint_of(request: web.Request) -> str:
    """The endpoint the router resolved (`/containers/{id}/exec`), without a version
    prefix: the path as the handler will read it, however it was spelled; "" for none."""
    resource = request.match_info.route.resource
    # A versioned route's canonical form is `/v{version}/…` (routes.VERSION_PREFIX).
    return "" if resource is None else resource.canonical.removeprefix("/v{version}")


def target_of(request: web.Request) -> Target:
    target: Target = request[TARGET_KEY]
    return target


def json_response(data: Any, status: int = 200) -> web.Response:
    # The daemon's encoder ends every JSON body with a newline.
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":")).encode() + b"\n",
        content_type="application/json",
    )


async def read_body(request: web.Request) -> bytes:
    """A body the proxy reads whole (a JSON config): bounded in size by [server]
    max_json_body (a 413), and in time by head_timeout, counted from when its reading
    starts. A client that declares a body and stops sending it would otherwise hold its
    connection, and the handler waiting on it, for as long as it stays connected."""
    timeout = request.app[CONFIG].server.head_timeout
    try:
        return await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise web.HTTPRequestTimeout() from None
