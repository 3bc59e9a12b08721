"""The admin API, on its own listener: the cluster's nodes, for operators and `swarmproxy
node`. Everything is JSON under /swarmproxy/v1; errors are `{"message": ...}` as in the
Docker API. With `[admin] token`, every request needs `Authorization: Bearer <token>`.

    GET    /swarmproxy/v1/nodes[?label=k=v…][&all=1]   nodes (drained ones with all=1)
    POST   /swarmproxy/v1/nodes                        register {address, name, labels,
                                                   tls_ca_pem, tls_cert_pem, tls_key_pem,
                                                   creation_status}
    POST   /swarmproxy/v1/nodes/unregister             unregister {"nodes": [...]}
    GET    /swarmproxy/v1/nodes/{node}                 one node (by name or address)
    PATCH  /swarmproxy/v1/nodes/{node}                 {"labels": {k: v, or null to drop},
                                                    "creation_status": "created"|"pending"|…}
    DELETE /swarmproxy/v1/nodes/{node}                 unregister one
    POST   /swarmproxy/v1/nodes/{node}/drain|enable    take no new containers, or again
    POST   /swarmproxy/v1/schedule[?node=…][&name=…]   where a create body would go, and why
    GET    /swarmproxy/v1/health                       200 when ready, else 503 (no token
                                                   needed for the verdict; details with it)
    GET    /metrics                                    Prometheus text format (the token as
                                                   a bearer credential, when one is set)
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from swarmproxy import metrics
from swarmproxy.api import middleware
from swarmproxy.api.context import CLUSTER, json_response
from swarmproxy.cluster import Cluster, Node
from swarmproxy.cluster.node import CREATED
from swarmproxy.cluster.registry import check_creation_status
from swarmproxy.config import AdminConfig, ConfigError, node_from_table
from swarmproxy.errors import BadRequest
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.scheduler.expressions import extract_placement
from swarmproxy.storage import NodeRecord, StorageError

PREFIX = "/swarmproxy/v1"
HEALTH = PREFIX + "/health"
# Within a load balancer's usual check timeout.
HEALTH_STORAGE_TIMEOUT = 2.0
TOKEN = web.AppKey("admin-token", str)
# Whether the request showed the admin token (or none is needed).
AUTHORIZED = "swarmproxy.authorized"


def _when(seconds: float) -> str:
    """RFC 3339 in UTC, or "" for never."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)) if seconds else ""


def node_view(node: Node) -> dict[str, Any]:
    health = node.health
    return {
        "Name": node.name,
        "Address": node.address,
        "Status": str(health.status),
        "CreationStatus": node.creation_status,
        "Labels": node.labels,
        "TLS": node.tls is not None,
        "Containers": node.info.get("Containers", 0),
        "Failures": health.failures,
        "LastError": health.last_error,
        "LastErrorAt": _when(health.last_error_at),
        "LastSuccessAt": _when(health.last_success_at),
        "DisabledUntil": _when(health.disabled_until),
    }


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN]
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    request[AUTHORIZED] = not token or hmac.compare_digest(given.encode(), token.encode())
    # A load balancer asks for health without a token: it gets the verdict, not the details.
    if not request[AUTHORIZED] and request.path != HEALTH:
        return middleware.error_response(401, "unauthorized: a valid bearer token is needed")
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """Ready when storage answers and at least one node takes containers: 200, else 503."""
    cluster = _cluster(request)
    outage = cluster.storage_outage
    # Asked afresh: an idle proxy learns of an outage only when it next needs storage.
    answered = outage is None and await _storage_answers(cluster)
    ready = [n for n in cluster.nodes if n.ready]
    healthy = answered and bool(ready)
    body: dict[str, Any] = {
        "Status": "ready" if healthy else "unready",
        "Storage": {
            "Available": answered,
            "Since": _when(outage.since) if outage else "",
            "Error": outage.error if outage and request[AUTHORIZED] else "",
        },
        "ReadyNodes": len(ready),
    }
    if request[AUTHORIZED]:
        body["Nodes"] = [node_view(n) for n in cluster.nodes]
    return json_response(body, 200 if healthy else 503)


async def prometheus(request: web.Request) -> web.Response:
    body = metrics.exposition(_cluster(request))
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def _storage_answers(cluster: Cluster) -> bool:
    try:
        await asyncio.wait_for(cluster.storage.ping(), HEALTH_STORAGE_TIMEOUT)
    except (StorageError, TimeoutError):
        return False
    return True


def _cluster(request: web.Request) -> Cluster:
    return request.app[CLUSTER]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _views(cluster: Cluster, records: list[NodeRecord]) -> list[dict[str, Any]]:
    addresses = {r.address for r in records}
    return [node_view(n) for n in cluster.nodes if n.address in addresses]


async def list_nodes(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    labels: dict[str, str] = {}
    for label in request.query.getall("label", []):
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise BadRequest(f"label {label!r} is not key=value")
        labels[key] = value
    unfiltered = request.query.get("all", "") in ("1", "true", "yes")
    if unfiltered:
        records = await cluster.unfiltered_nodes_for_metadata(labels)
    else:
        records = await cluster.nodes_for_metadata(labels)
    return json_response(_views(cluster, records))


async def register(request: web.Request) -> web.Response:
    body = await _body(request)
    status = body.pop("creation_status", CREATED)
    if not isinstance(status, str):
        raise BadRequest('"creation_status" must be a string')
    try:
        table = node_from_table(body, "node")
    except ConfigError as e:
        raise BadRequest(str(e)) from None
    node = await _cluster(request).register(
        table.address, table.name, table.labels, table.tls, status
    )
    return json_response(node_view(node), 201)


async def get_node(request: web.Request) -> web.Response:
    return json_response(node_view(_cluster(request).find_node(request.match_info["node"])))


async def update_node(request: web.Request) -> web.Response:
    """Labels and creation status, changed together in one atomic step."""
    body = await _body(request)
    labels = body.get("labels", {})
    status = body.get("creation_status")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in labels.items()
    ):
        raise BadRequest('"labels" must be an object of strings (null drops a label)')
    if status is not None:
        if not isinstance(status, str):
            raise BadRequest('"creation_status" must be a string')
        check_creation_status(status)

    def change(record: NodeRecord) -> None:
        for key, value in labels.items():
            if value is None:
                record.metadata.pop(key, None)
            else:
                record.metadata[key] = value
        if status is not None:
            record.creation_status = status

    cluster = _cluster(request)
    record = await cluster.atomic_update_node(request.match_info["node"], change)
    return json_response(node_view(cluster.find_node(record.address)))


async def unregister(request: web.Request) -> web.Response:
    await _cluster(request).unregister(request.match_info["node"])
    return web.Response(status=204)


async def unregister_nodes(request: web.Request) -> web.Response:
    refs = (await _body(request)).get("nodes")
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs) or not refs:
        raise BadRequest('"nodes" must be a list of node names or addresses')
    await _cluster(request).unregister_nodes(refs)
    return web.Response(status=204)


async def drain(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    record = await cluster.drain(request.match_info["node"])
    return json_response(node_view(cluster.find_node(record.address)))


async def enable(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    record = await cluster.enable(request.match_info["node"])
    return json_response(node_view(cluster.find_node(record.address)))


async def schedule(request: web.Request) -> web.Response:
    """The placement dry-run: for a create body, the node that would be chosen and every
    node's verdict (the filter that excluded it and why) and strategy score. Nothing is
    created; a rotation does not move; no hook runs."""
    config, constraints, affinities = extract_placement(await _body(request))
    placement = await _cluster(request).place(
        SchedulingRequest(request.query.get("name", ""), config, None, constraints, affinities),
        request.query.getall("node", []),
    )
    return json_response(placement.describe())


async def not_found(request: web.Request) -> web.Response:
    return middleware.error_response(404, "page not found")


def make_admin_app(cluster: Cluster, admin: AdminConfig) -> web.Application:
    app = web.Application(
        middlewares=[middleware.request_log, middleware.docker_errors, bearer_token]
    )
    app[CLUSTER] = cluster
    app[TOKEN] = admin.token
    node = PREFIX + "/nodes/{node}"
    app.router.add_get(PREFIX + "/nodes", list_nodes)
    app.router.add_post(PREFIX + "/nodes", register)
    app.router.add_post(PREFIX + "/nodes/unregister", unregister_nodes)
    app.router.add_get(node, get_node)
    app.router.add_patch(node, update_node)
    app.router.add_delete(node, unregister)
    app.router.add_post(node + "/drain", drain)
    app.router.add_post(node + "/enable", enable)
    app.router.add_post(PREFIX + "/schedule", schedule)
    app.router.add_get(HEALTH, health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
