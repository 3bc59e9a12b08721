"""Image endpoints: translated into the cluster's image calls, their answers relayed."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from swarmproxy.api.context import Handler, cluster_of, json_response, read_body
from swarmproxy.api.forward import (
    forward,
    relay,
    stream_merged,
    upstream_headers,
    upstream_path,
)
from swarmproxy.cluster import Node
from swarmproxy.cluster.images import quoted
from swarmproxy.cluster.streams import CHUNK
from swarmproxy.errors import NoNodeAvailable
from swarmproxy.scheduler.expressions import matching, parse_constraints

# Where a pull, an import or a load goes, when not to every ready node: classic Swarm's
# constraint syntax (`node==node-1`, `region!=eu*`). The docker CLI sends it with every
# request when it is in its config file's HttpHeaders.
CONSTRAINT_HEADER = "X-Swarmproxy-Constraint"


def _version(request: web.Request) -> str:
    return request.match_info.get("version", "")


def _params(request: web.Request, *without: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query.items() if k not in without]


def _target_nodes(request: web.Request) -> Sequence[Node] | None:
    """The ready nodes the request's constraint picks; None (every ready node) without one."""
    text = request.headers.get(CONSTRAINT_HEADER, "")
    if not text.strip():
        return None
    # An invalid expression is a BadRequest of its own.
    nodes = matching(cluster_of(request).ready_nodes(), parse_constraints(text))
    if not nodes:
        raise NoNodeAvailable(f"no ready node satisfies the constraint {text.strip()}")
    return nodes


async def create(request: web.Request) -> web.StreamResponse:
    """`POST /images/create`: a pull (`fromImage`) or an import (`fromSrc`)."""
    cluster = cluster_of(request)
    nodes = _target_nodes(request)
    source = request.query.get("fromSrc", "")
    if source:
        broadcast = cluster.import_image(
            request.content.iter_chunked(CHUNK) if source == "-" else source,
            nodes=nodes,
            params=_params(request, "fromSrc"),
            api_version=_version(request),
        )
    else:
        broadcast = cluster.pull_image(
            request.query.get("fromImage", ""),
            request.query.get("tag", ""),
            auth=request.headers.get("X-Registry-Auth"),
            nodes=nodes,
            params=_params(request, "fromImage", "tag"),
            api_version=_version(request),
        )
    return await stream_merged(request, broadcast)


async def load(request: web.Request) -> web.StreamResponse:
    broadcast = cluster_of(request).load_image(
        request.content.iter_chunked(CHUNK),
        nodes=_target_nodes(request),
        params=_params(request),
        api_version=_version(request),
    )
    return await stream_merged(request, broadcast)


async def list_images(request: web.Request) -> web.Response:
    images = await cluster_of(request).list_images(_params(request), _version(request))
    return json_response(images)


def on_holder(view: str) -> Handler:
    """`GET /images/{name}/<view>`, answered by a node that holds the image."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ref = request.match_info["name"]
        path = upstream_path(request, f"/images/{quoted(ref)}/{view}")
        headers = upstream_headers(request)
        async with cluster_of(request).open_on_image(
            ref, request.method, path, headers=headers
        ) as (node, response):
            return await relay(request, response, node)

    return handler


async def save(request: web.Request) -> web.StreamResponse:
    """`GET /images/get?names=…`: from one node that holds every image."""
    names = request.query.getall("names", [])
    node = await cluster_of(request).save_node(names)
    return await forward(request, node, upstream_path(request, "/images/get"))


async def push(request: web.Request) -> web.StreamResponse:
    async with cluster_of(request).push_image(
        request.match_info["name"],
        request.query.get("tag", ""),
        auth=request.headers.get("X-Registry-Auth"),
        params=_params(request, "tag"),
        api_version=_version(request),
    ) as (node, response):
        return await relay(request, response, node)


async def tag(request: web.Request) -> web.Response:
    await cluster_of(request).tag_image(
        request.match_info["name"],
        request.query.get("repo", ""),
        request.query.get("tag", ""),
        _version(request),
    )
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    cluster = cluster_of(request)
    deletions = await cluster.remove_image(
        request.match_info["name"], _params(request), _version(request)
    )
    return json_response(deletions)


async def prune(request: web.Request) -> web.Response:
    report = await cluster_of(request).prune_images(_params(request), _version(request))
    return json_response(report)


async def prune_build_cache(request: web.Request) -> web.Response:
    report = await cluster_of(request).prune_build_cache(_params(request), _version(request))
    return json_response(report)


async def system_df(request: web.Request) -> web.Response:
    return json_response(await cluster_of(request).system_df(_version(request)))


async def build(request: web.Request) -> web.StreamResponse:
    async with cluster_of(request).build_image(
        request.content.iter_chunked(CHUNK),
        _params(request),
        headers=upstream_headers(request),
        api_version=_version(request),
    ) as output:
        return await relay(request, output.response, output.node, body=output.lines)


async def commit(request: web.Request) -> web.StreamResponse:
    config = await read_body(request) if request.body_exists else None
    answer = await cluster_of(request).commit_container(
        request.query.get("container", ""),
        _params(request),
        config,
        headers=upstream_headers(request),
        api_version=_version(request),
    )
    return await relay(request, answer.response, answer.node, body=answer.body)


def on_any_node(path: str) -> Handler:
    """Answered by any ready node alike (`/images/search`, `/auth`): they ask a registry,
    and every node asks the same one, so the first ready node serves."""

    async def handler(request: web.Request) -> web.StreamResponse:
        nodes = cluster_of(request).ready_nodes()
        if not nodes:
            raise NoNodeAvailable()
        return await forward(request, nodes[0], upstream_path(request, path))

    return handler
