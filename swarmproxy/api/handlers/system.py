"""`/_ping`, `/version`, `/info`, `/events`: answered by the proxy for the whole cluster."""

from __future__ import annotations

from aiohttp import web

from swarmproxy.api.context import CONFIG, cluster_of, json_response
from swarmproxy.api.forward import stream_merged, upstream_path
from swarmproxy.cluster.events import MergedEvents
from swarmproxy.cluster.info import cluster_info, cluster_version
from swarmproxy.errors import NoNodeAvailable

PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Docker-Experimental": "false",
    "Builder-Version": "1",
}


async def ping(request: web.Request) -> web.Response:
    # aiohttp sends no body for HEAD but keeps the length of this one, as the daemon does.
    return web.Response(
        body=b"OK", headers=PING_HEADERS, content_type="text/plain", charset="utf-8"
    )


async def version(request: web.Request) -> web.Response:
    return json_response(cluster_version(cluster_of(request)))


async def info(request: web.Request) -> web.Response:
    cluster = cluster_of(request)
    timeout = cluster.health_config.timeout
    infos = []
    for node, result in await cluster.fan_out(lambda n: n.client.info(timeout)):
        if isinstance(result, dict):
            node.info = result
            infos.append((node, result))
    if not infos and not cluster.nodes:
        raise NoNodeAvailable("the cluster has no nodes")
    return json_response(cluster_info(cluster, request.app[CONFIG].server.name, infos))


async def events(request: web.Request) -> web.StreamResponse:
    stream = MergedEvents(cluster_of(request), upstream_path(request, "/events"))
    return await stream_merged(request, stream)
