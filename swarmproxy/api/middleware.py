"""What every request goes through: the request log, the daemon's error bodies, the API
version check, and the daemon's headers on what the proxy answers itself."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from swarmproxy import __version__, metrics
from swarmproxy.api.context import CLUSTER, CONFIG, TARGET_KEY, endpoint_of, json_response
from swarmproxy.api.forward import NODE_KEY
from swarmproxy.cluster import Cluster, versions
from swarmproxy.errors import DockerError
from swarmproxy.log import REQUEST_ID, log_event
from swarmproxy.storage import StorageError

log = logging.getLogger("swarmproxy.http")

SERVER = f"swarmproxy/{__version__} (linux)"
# The response whose status and headers are on their way, once there is one.
PREPARED_KEY = "swarmproxy.prepared"
# On an error the proxy made itself, rather than one that carries a node's answer (its
# status, its message): a plain DockerError is how the cluster passes a node's answer on.
# Without it a merged error (`… (on node-1); … (on node-2)`) and the proxy's own 500 look
# alike, both served under the proxy's Server header.
PROXY_ERROR_HEADER = "X-Swarmproxy-Error"
# Names each request in the logs and in its answer; one a client sends is kept, so that a
# request can be followed from a load balancer or a CI job into the proxy's lines.
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_KEY = "swarmproxy.request_id"
_REQUEST_ID_MAX = 128


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


def _node_name(request: web.Request, response: web.StreamResponse | None) -> str:
    if response is not None and NODE_KEY in response:
        return str(response[NODE_KEY].name)
    if NODE_KEY in request:
        # Answered by the proxy for what a node did (a container created there).
        return str(request[NODE_KEY].name)
    target = request.get(TARGET_KEY)
    return target.node.name if target is not None else ""


def _request_id(request: web.Request) -> str:
    return request_id(request.headers.get(REQUEST_ID_HEADER, ""))


def request_id(given: str) -> str:
    """The ID a request is known by: the client's own (`given`) when it is a sane one."""
    if 0 < len(given) <= _REQUEST_ID_MAX and given.isprintable() and " " not in given:
        return given
    return _new_ids.next()


class _RequestIds:
    """Sixteen hex digits: eight drawn at random for the process, then a count. Unique
    without a random draw (a getrandom() call) per request; drawn again in a forked worker."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(secrets.randbelow(1 << 32))

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFF:08x}"


_new_ids = _RequestIds()
os.register_at_fork(after_in_child=_new_ids.reseed)


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = request[_REQUEST_ID_KEY] = _request_id(request)
    # Whatever is logged while the request is served (and by work it starts) names it.
    token = REQUEST_ID.set(request_id)
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        note_request(
            request.method,
            request.path_qs,
            endpoint_of(request) or "unmatched",
            response.status if response is not None else "aborted",
            _node_name(request, response),
            time.perf_counter() - started,
        )
        REQUEST_ID.reset(token)


def note_request(
    method: str, path: str, endpoint: str, status: int | str, node: str, took: float
) -> None:
    """A request's line in the log (under its request ID) and its count in the metrics,
    however it was served."""
    log_event(
        log,
        logging.INFO,
        "request",
        method=method,
        path=path,
        status=status,
        node=node,
        duration_ms=round(took * 1000, 1),
    )
    metrics.count_request(endpoint, method, str(status), node, took)


def _cut(request: web.Request, error: Exception) -> None:
    """Once the status and headers are sent, an error can't be answered: a second response
    would land inside the first one's body. Cutting the connection is the honest signal."""
    log_event(
        log,
        logging.WARNING,
        "stream failed",
        path=request.path,
        error=str(error) or type(error).__name__,
    )
    if request.transport is not None:
        request.transport.close()


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConnectionError:
        raise  # the client is gone; nothing can be answered
    except Exception as e:
        answered: web.StreamResponse | None = request.get(PREPARED_KEY)
        if answered is not None:
            _cut(request, e)
            # aiohttp finishes it quietly on the closed connection.
            return answered
        answer = _error_answer(request, e)
        if type(e) is not DockerError:
            answer.headers[PROXY_ERROR_HEADER] = "proxy"
        return answer


def _error_answer(request: web.Request, error: Exception) -> web.Response:
    """The daemon's kind of answer: its status codes, `{"message": ...}`."""
    if isinstance(error, DockerError):
        if error.status >= 500:
            log_event(
                log,
                logging.WARNING,
                "request failed",
                path=request.path,
                status=error.status,
                error=error.message,
            )
        return error_response(error.status, error.message)
    if isinstance(error, StorageError):
        log_event(log, logging.ERROR, "storage failed", path=request.path, error=str(error))
        return error_response(503, f"storage unavailable: {error}")
    if isinstance(error, web.HTTPException):
        if error.status in (404, 405):
            # The daemon's router answers unknown paths and methods alike.
            log_event(
                log, logging.INFO, "unsupported endpoint", method=request.method, path=request.path
            )
            return error_response(404, "page not found")
        server = request.app[CONFIG].server
        if error.status == 413:
            limit = server.max_json_body
            return error_response(
                413, f"request body too large: the limit is {limit} bytes (server.max_json_body)"
            )
        if error.status == 408:
            wait = server.head_timeout
            return error_response(
                408, f"request body not received within {wait:g} s (server.head_timeout)"
            )
        return error_response(error.status, error.reason)
    log.error("unexpected error", exc_info=error, extra={"fields": {"path": request.path}})
    return error_response(500, f"swarmproxy internal error: {error}")


@web.middleware
async def api_version(request: web.Request, handler: Handler) -> web.StreamResponse:
    requested = request.match_info.get("version")
    if requested:
        cluster = request.app[CLUSTER]
        too_new, too_old = versions.check_request_version(
            requested, cluster.api_version, cluster.min_api_version
        )
        if too_new:
            return error_response(400, too_new)
        if too_old:
            # The daemon answers this one in plain text, not JSON.
            return web.Response(status=400, text=too_old + "\n")
    return await handler(request)


async def daemon_headers(request: web.Request, response: web.StreamResponse) -> None:
    """What a daemon sends on every answer; a node's own answers keep the node's."""
    request[PREPARED_KEY] = response
    if _REQUEST_ID_KEY in request:
        response.headers[REQUEST_ID_HEADER] = request[_REQUEST_ID_KEY]
    if NODE_KEY in response:
        return
    response.headers["Server"] = SERVER
    for name, value in own_headers(request.app[CLUSTER]):
        response.headers.setdefault(name, value)


def own_headers(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    """The daemon's headers on an answer of the proxy's own, beside Server."""
    return (
        ("Api-Version", cluster.api_version),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
    )
