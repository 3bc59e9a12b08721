"""Container endpoints that need more than a plain forward: they keep the index true."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from aiohttp import web

from swarmproxy.api.context import Handler, cluster_of, json_response, read_body, target_of
from swarmproxy.api.forward import NODE_KEY, forward, relay, upstream_headers, upstream_path
from swarmproxy.cluster import Node
from swarmproxy.cluster.container_lists import KeptQuery, label_filters
from swarmproxy.cluster.creation import check_name
from swarmproxy.cluster.listing import merge_containers
from swarmproxy.node_client import TRANSPORT_ERRORS, operation_of
from swarmproxy.tasks import shielded

T = TypeVar("T")

Learn = Callable[[int, bytes], Awaitable[bytes | None]]


async def _exchange(
    request: web.Request,
    node: Node,
    path: str,
    learn: Learn,
    body: bytes | None = None,
    on_error: Callable[[], Awaitable[None]] | None = None,
    settle: bool = True,
) -> web.StreamResponse:
    """Send the request to `node`, read its (small) answer, let `learn` index what it says
    (and perhaps return other bytes to send), then relay it. `on_error` runs when the node
    gave no answer. With `settle`, all of it runs to the end even if the client goes away
    (what `learn` writes to the index must not be cut halfway)."""
    if body is None and request.body_exists:
        body = await read_body(request)

    async def run() -> web.StreamResponse:
        try:
            async with node.client.request(
                request.method, path, headers=upstream_headers(request), data=body
            ) as upstream:
                try:
                    payload = await upstream.read()
                except TRANSPORT_ERRORS as e:
                    raise node.client.unavailable(e, operation_of(upstream)) from e
                replaced = await learn(upstream.status, payload)
        except BaseException:
            if on_error is not None:
                await on_error()
            raise
        return await relay(request, upstream, node, body=payload if replaced is None else replaced)

    return await (shielded(run()) if settle else run())


async def create(request: web.Request) -> web.Response:
    params = [(k, v) for k, v in request.query.items() if k != "name"]
    created = await cluster_of(request).create_container(
        await read_body(request),
        request.query.get("name", ""),
        params=params,
        api_version=request.match_info.get("version", ""),
        content_type=request.headers.get("Content-Type", ""),
        # For a pull, when the image is on no node: what a client may send with its create.
        auth=request.headers.get("X-Registry-Auth"),
    )
    request[NODE_KEY] = created.node
    return web.Response(status=201, body=created.body, content_type="application/json")


def _flag(value: str) -> bool:
    """The daemon's reading of a boolean query parameter (httputils.BoolValue)."""
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def _kept_query(query: Mapping[str, str]) -> KeptQuery | None:
    """What the kept lists can answer: `all`, and label filters; nothing that changes the
    answer's shape (size, a positive limit). The rest goes to the nodes."""
    if not set(query) <= {"all", "size", "limit", "filters", "trunc_cmd"}:
        return None
    limit = query.get("limit", "").strip()
    if _flag(query.get("size", "")) or (
        limit and not (limit.lstrip("-").isdigit() and int(limit) <= 0)
    ):
        return None
    labels = label_filters(query.get("filters", ""))
    if labels is None:
        return None
    return KeptQuery(_flag(query.get("all", "")), labels)


async def list_containers(request: web.Request) -> web.Response:
    cluster = cluster_of(request)
    path = upstream_path(request, "/containers/json")
    kept = _kept_query(request.query)
    if kept is not None:
        body = await cluster.list_kept(kept, path, request.match_info.get("version", ""))
        return web.Response(body=body, content_type="application/json")
    per_node = [(node, body or []) for node, body in await cluster.fan_out_json("GET", path)]
    try:
        limit = int(request.query.get("limit", "0") or 0)
    except ValueError:
        limit = 0
    return json_response(await merge_containers(per_node, limit))


async def prune(request: web.Request) -> web.Response:
    cluster = cluster_of(request)
    path = upstream_path(request, "/containers/prune")
    deleted: list[str] = []
    reclaimed = 0
    for node, body in await cluster.fan_out_json("POST", path):
        removed = body.get("ContainersDeleted") or []
        deleted.extend(removed)
        reclaimed += body.get("SpaceReclaimed") or 0
        for container_id in removed:
            await shielded(cluster.note_change(node, container_id))
    await shielded(cluster.forget_containers(deleted))
    return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def with_node(node: Node, status: int, payload: bytes) -> bytes | None:
    """A container's inspect with its node in it (classic Swarm's `Node`), spliced in
    without re-encoding the daemon's JSON; None for an answer that is no inspect."""
    if status != 200 or not payload.startswith(b"{"):
        return None
    described = json.dumps(node.describe(), separators=(",", ":")).encode()
    return b'{"Node":' + described + b"," + payload[1:]


async def inspect(request: web.Request) -> web.StreamResponse:
    target = target_of(request)

    async def learn(status: int, payload: bytes) -> bytes | None:
        return with_node(target.node, status, payload)

    # It only reads: nothing to settle when its client goes away.
    return await _exchange(request, target.node, target.path, learn, settle=False)


async def remove(request: web.Request) -> web.StreamResponse:
    target = target_of(request)
    cluster = cluster_of(request)

    async def learn(status: int, payload: bytes) -> None:
        if status in (204, 404):
            await cluster.forget_container(target.id)
            await cluster.note_change(target.node, target.id)

    return await _exchange(request, target.node, target.path, learn)


async def rename(request: web.Request) -> web.StreamResponse:
    target = target_of(request)
    cluster = cluster_of(request)
    new_name = request.query.get("name", "").removeprefix("/")
    if not new_name or new_name == await cluster.container_name(target.id):
        # The node gives the daemon's own answer to an empty or unchanged name.
        return await forward(request, target.node, target.path)
    check_name(new_name)
    async with cluster.renaming(target.id):
        claim = await cluster.claim_name(new_name)

        async def release() -> None:
            await cluster.release_claim(claim)

        async def learn(status: int, payload: bytes) -> None:
            if status == 204:
                await cluster.container_renamed(target.id, target.node, claim)
                await cluster.note_change(target.node, target.id)
            else:
                await release()

        return await _exchange(request, target.node, target.path, learn, on_error=release)


async def change(request: web.Request) -> web.StreamResponse:
    """start, stop, kill and the like: the change is told to every replica's `ps` before
    the client hears the node's (small) answer."""
    target = target_of(request)
    cluster = cluster_of(request)

    async def learn(status: int, payload: bytes) -> None:
        await cluster.note_change(target.node, target.id)

    return await _exchange(request, target.node, target.path, learn)


def noted_after(handler: Handler) -> Handler:
    """For a stream that lasts until the container changes by itself (wait, attach): the
    change is told to every replica when the stream ends."""

    async def noting(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            target = target_of(request)
            await shielded(cluster_of(request).note_change(target.node, target.id))

    return noting


async def exec_create(request: web.Request) -> web.StreamResponse:
    target = target_of(request)
    cluster = cluster_of(request)
    body = await read_body(request)

    async def learn(status: int, payload: bytes) -> None:
        if status == 201:
            await cluster.exec_created(json.loads(payload)["Id"], target.id)

    return await _exchange(request, target.node, target.path, learn, body)
