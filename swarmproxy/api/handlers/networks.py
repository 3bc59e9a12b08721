"""Network endpoints: translated into the cluster's network calls, answered as the daemon."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from swarmproxy.api.context import cluster_of, json_response, read_body


def _version(request: web.Request) -> str:
    return request.match_info.get("version", "")


def _content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "")


async def create(request: web.Request) -> web.Response:
    created = await cluster_of(request).create_network(
        await read_body(request), api_version=_version(request), content_type=_content_type(request)
    )
    return json_response(created, 201)


async def list_networks(request: web.Request) -> web.Response:
    listing = await cluster_of(request).list_networks(
        list(request.query.items()), _version(request)
    )
    return json_response(listing)


async def inspect(request: web.Request) -> web.Response:
    network = await cluster_of(request).inspect_network(
        request.match_info["id"], list(request.query.items()), _version(request)
    )
    return json_response(network)


async def remove(request: web.Request) -> web.Response:
    await cluster_of(request).remove_network(request.match_info["id"], _version(request))
    return web.Response(status=204)


class _EndpointCall(Protocol):
    async def __call__(
        self, ref: str, config: bytes, *, api_version: str, content_type: str
    ) -> None: ...


async def _on_endpoint(request: web.Request, call: _EndpointCall) -> web.Response:
    """connect and disconnect: the network in the path, the container in the body."""
    await call(
        request.match_info["id"],
        await read_body(request),
        api_version=_version(request),
        content_type=_content_type(request),
    )
    return web.Response(status=200)


async def connect(request: web.Request) -> web.Response:
    return await _on_endpoint(request, cluster_of(request).connect_network)


async def disconnect(request: web.Request) -> web.Response:
    return await _on_endpoint(request, cluster_of(request).disconnect_network)


async def prune(request: web.Request) -> web.Response:
    report = await cluster_of(request).prune_networks(
        list(request.query.items()), _version(request)
    )
    return json_response(report)
