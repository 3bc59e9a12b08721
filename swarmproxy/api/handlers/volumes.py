"""Volume endpoints: translated into the cluster's volume calls, answered as the daemon."""

from __future__ import annotations

from aiohttp import web

from swarmproxy.api.context import cluster_of, json_response, read_body
from swarmproxy.api.forward import NODE_KEY


def _version(request: web.Request) -> str:
    return request.match_info.get("version", "")


async def create(request: web.Request) -> web.Response:
    created = await cluster_of(request).create_volume(
        await read_body(request),
        api_version=_version(request),
        content_type=request.headers.get("Content-Type", ""),
    )
    request[NODE_KEY] = created.node
    return json_response(created.volume, 201)


async def list_volumes(request: web.Request) -> web.Response:
    listing = await cluster_of(request).list_volumes(list(request.query.items()), _version(request))
    return json_response(listing)


async def inspect(request: web.Request) -> web.Response:
    volume = await cluster_of(request).inspect_volume(request.match_info["name"], _version(request))
    return json_response(volume)


async def remove(request: web.Request) -> web.Response:
    await cluster_of(request).remove_volume(
        request.match_info["name"], list(request.query.items()), _version(request)
    )
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    report = await cluster_of(request).prune_volumes(list(request.query.items()), _version(request))
    return json_response(report)
