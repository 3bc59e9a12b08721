"""The routing table: for every endpoint, how it is routed. The one place that says so.

Every route is served both bare and under a version prefix (`/v1.41/...`). A route `via`
CONTAINER or EXEC gets its target (node, full ID, upstream path) resolved before its handler
runs; its handler defaults to a plain forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from swarmproxy.api.context import TARGET_KEY, Handler, Target, cluster_of, target_of
from swarmproxy.api.forward import forward, upstream_path
from swarmproxy.api.handlers import containers, images, networks, system, volumes
from swarmproxy.api.hijack import hijacked_stream


class Via(Enum):
    PROXY = "answered by the proxy"
    ALL = "every node, merged"
    SCHEDULER = "the node the scheduler picks"
    CONTAINER = "the node of the container (full ID, unique prefix or name)"
    CONTAINER_IN_QUERY = "the node of the container the query names (`container=`)"
    EXEC = "the node of the exec's container"
    IMAGE = "a node that holds the image (the index's last node first, else asking the nodes)"
    HOLDERS = "every node that holds the image, answers merged"
    BROADCAST = "every ready node at once (or those a constraint picks), progress merged"
    ANY = "any ready node"
    NEW_VOLUME = "the node holding a volume of that name, else the node the scheduler picks"
    VOLUME = "a node that holds the volume (the index first, else asking the nodes)"
    VOLUME_HOLDERS = "every node, each removing its volume of that name; refusals named"
    EVERY_NODE_OR_NONE = "every node at once, all or nothing (a refusal undoes the others)"
    NETWORK = "every node with a network of the name the reference resolves to (IDs differ)"
    CONTAINER_IN_BODY = "the node of the container the body names (`Container`)"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    via: Via
    handler: Handler | None = None
    # Changes how `ps` shows the container: while it is under way, this process's `ps`
    # reads the container from its node.
    changes: bool = False


async def pass_through(request: web.Request) -> web.StreamResponse:
    target = target_of(request)
    return await forward(request, target.node, target.path)


C = "/containers/{id}"
# Image names hold slashes (`team/app`, `host:5000/x`), as the daemon's own routes allow.
IMG = "/images/{name:.+}"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/_ping", Via.PROXY, system.ping),
    Route("HEAD", "/_ping", Via.PROXY, system.ping),
    Route("GET", "/version", Via.PROXY, system.version),
    Route("GET", "/info", Via.ALL, system.info),
    Route("GET", "/events", Via.ALL, system.events),
    Route("POST", "/containers/create", Via.SCHEDULER, containers.create),
    Route("GET", "/containers/json", Via.ALL, containers.list_containers),
    Route("POST", "/containers/prune", Via.ALL, containers.prune),
    Route("GET", f"{C}/json", Via.CONTAINER, containers.inspect),
    Route("DELETE", C, Via.CONTAINER, containers.remove, changes=True),
    Route("POST", f"{C}/rename", Via.CONTAINER, containers.rename, changes=True),
    Route("POST", f"{C}/attach", Via.CONTAINER, containers.noted_after(hijacked_stream)),
    Route("POST", f"{C}/wait", Via.CONTAINER, containers.noted_after(pass_through)),
    Route("POST", f"{C}/exec", Via.CONTAINER, containers.exec_create),
    Route("POST", f"{C}/resize", Via.CONTAINER),
    *(
        Route("POST", f"{C}/{action}", Via.CONTAINER, containers.change, changes=True)
        for action in ("start", "stop", "restart", "kill", "pause", "unpause", "update")
    ),
    *(
        Route("GET", f"{C}/{view}", Via.CONTAINER)
        for view in (
            "top",
            "changes",
            "logs",
            "stats",
            "export",
            "archive",
        )
    ),
    Route("PUT", f"{C}/archive", Via.CONTAINER),
    Route("HEAD", f"{C}/archive", Via.CONTAINER),
    Route("POST", "/commit", Via.CONTAINER_IN_QUERY, images.commit),
    Route("POST", "/images/create", Via.BROADCAST, images.create),
    Route("POST", "/images/load", Via.BROADCAST, images.load),
    Route("GET", "/images/json", Via.ALL, images.list_images),
    Route("POST", "/images/prune", Via.ALL, images.prune),
    Route("GET", "/images/get", Via.IMAGE, images.save),
    Route("GET", "/images/search", Via.ANY, images.on_any_node("/images/search")),
    Route("GET", f"{IMG}/json", Via.IMAGE, images.on_holder("json")),
    Route("GET", f"{IMG}/history", Via.IMAGE, images.on_holder("history")),
    Route("GET", f"{IMG}/get", Via.IMAGE, images.on_holder("get")),
    Route("POST", f"{IMG}/push", Via.IMAGE, images.push),
    Route("POST", f"{IMG}/tag", Via.HOLDERS, images.tag),
    Route("DELETE", IMG, Via.HOLDERS, images.remove),
    Route("POST", "/build", Via.SCHEDULER, images.build),
    Route("POST", "/build/prune", Via.ALL, images.prune_build_cache),
    Route("GET", "/system/df", Via.ALL, images.system_df),
    Route("POST", "/auth", Via.ANY, images.on_any_node("/auth")),
    Route("POST", "/volumes/create", Via.NEW_VOLUME, volumes.create),
    Route("GET", "/volumes", Via.ALL, volumes.list_volumes),
    Route("POST", "/volumes/prune", Via.ALL, volumes.prune),
    Route("GET", "/volumes/{name}", Via.VOLUME, volumes.inspect),
    Route("DELETE", "/volumes/{name}", Via.VOLUME_HOLDERS, volumes.remove),
    Route("POST", "/networks/create", Via.EVERY_NODE_OR_NONE, networks.create),
    Route("GET", "/networks", Via.ALL, networks.list_networks),
    Route("POST", "/networks/prune", Via.ALL, networks.prune),
    Route("GET", "/networks/{id}", Via.NETWORK, networks.inspect),
    Route("DELETE", "/networks/{id}", Via.NETWORK, networks.remove),
    Route("POST", "/networks/{id}/connect", Via.CONTAINER_IN_BODY, networks.connect),
    Route("POST", "/networks/{id}/disconnect", Via.CONTAINER_IN_BODY, networks.disconnect),
    Route("POST", "/exec/{id}/start", Via.EXEC, hijacked_stream),
    Route("GET", "/exec/{id}/json", Via.EXEC),
    Route("POST", "/exec/{id}/resize", Via.EXEC),
)

VERSION_PREFIX = r"/v{version:[0-9]+\.[0-9]+}"


def _with_target(route: Route) -> Handler:
    handler = route.handler or pass_through
    if route.via is Via.CONTAINER:

        async def for_container(request: web.Request) -> web.StreamResponse:
            cluster = cluster_of(request)
            container_id, node = await cluster.route_container(request.match_info["id"])
            path = upstream_path(request, route.path.format(id=container_id))
            request[TARGET_KEY] = Target(node, container_id, path)
            if not route.changes:
                return await handler(request)
            async with cluster.changing(node, container_id):
                return await handler(request)

        return for_container
    if route.via is Via.EXEC:

        async def for_exec(request: web.Request) -> web.StreamResponse:
            exec_id = request.match_info["id"]
            _, node = await cluster_of(request).locate_exec(exec_id)
            path = upstream_path(request, route.path.format(id=exec_id))
            request[TARGET_KEY] = Target(node, exec_id, path)
            return await handler(request)

        return for_exec
    if route.handler is None:
        raise ValueError(f"{route.method} {route.path} routed {route.via.name} needs a handler")
    return route.handler


def _cleaned_away(value: str) -> bool:
    # A container's name may be given with its leading slash (`/web`), as inspect shows it.
    return any(segment in ("", ".", "..") for segment in value.removeprefix("/").split("/"))


def _names_only(handler: Handler) -> Handler:
    """A reference in the path that holds an empty, `.` or `..` segment once decoded
    (`..%2Fx`) names nothing: the daemon's router cleans such a path (`/volumes/../x` is
    `/x`) before routing it, and sent on to a node it would be redirected elsewhere."""

    async def checked(request: web.Request) -> web.StreamResponse:
        if any(
            _cleaned_away(request.match_info[key])
            for key in ("id", "name")
            if key in request.match_info
        ):
            raise web.HTTPNotFound()
        return await handler(request)

    return checked


def register(app: web.Application) -> None:
    for route in ROUTES:
        handler = _with_target(route)
        if "{" in route.path:
            handler = _names_only(handler)
        app.router.add_route(route.method, route.path, handler)
        app.router.add_route(route.method, VERSION_PREFIX + route.path, handler)
