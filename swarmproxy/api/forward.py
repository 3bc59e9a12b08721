"""How a request is forwarded to a node and how the node's answer is relayed: the one place.

Bodies stream both ways with back-pressure and are never read whole, except where a
handler asks for the answer's bytes to learn from them (an ID to index).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from swarmproxy import metrics
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.streams import chunks

# Per connection, never forwarded (RFC 9110 §7.6.1), plus what the client library sets.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# A response marked with this key came from a node; it keeps the node's own headers.
NODE_KEY = "swarmproxy.node"


def filtered(headers: Any) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


def upstream_headers(request: web.BaseRequest, *, streamed_body: bool = False) -> CIMultiDict[str]:
    """The client's headers for the node. Content-Length goes along only with a body that
    is streamed through as it came; for a body read here (or none) aiohttp sets it."""
    headers = filtered(request.headers)
    length = request.headers.get("Content-Length")
    if streamed_body and length is not None:
        headers["Content-Length"] = length
    return headers


def upstream_path(request: web.Request, path: str) -> str:
    """`path` under the client's version prefix, with the client's query string."""
    version = request.match_info.get("version")
    prefix = f"/v{version}" if version else ""
    # The raw query: decoding and re-encoding it would turn %23 into a fragment.
    query = request.rel_url.raw_query_string
    return f"{prefix}{path}?{query}" if query else f"{prefix}{path}"


async def forward(request: web.Request, node: Node, path: str) -> web.StreamResponse:
    """Send the request on to `node` at `path` (already under the version prefix), its body
    streamed through as it comes."""
    # A body a middleware read whole (the policy judging it) is sent as read.
    streamed = request.body_exists and request.can_read_body
    data: Any = request.content if streamed else await request.read() or None
    headers = upstream_headers(request, streamed_body=streamed)
    async with node.client.request(request.method, path, headers=headers, data=data) as upstream:
        return await relay(request, upstream, node)


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    node: Node,
    *,
    body: bytes | AsyncGenerator[bytes, None] | None = None,
) -> web.StreamResponse:
    """Answer the client with the node's status and headers and `body` (whole, or streamed
    as it comes), or the node's own body streamed through."""
    out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    out.headers.extend(filtered(upstream.headers))
    out[NODE_KEY] = node
    if isinstance(body, bytes):
        out.content_length = len(body)
    elif (
        body is None
        and upstream.content_length is not None
        and "Transfer-Encoding" not in upstream.headers
    ):
        out.content_length = upstream.content_length
    await out.prepare(request)
    if isinstance(body, bytes):
        await out.write(body)
    elif request.method != "HEAD":
        # A node failing mid-stream raises NodeUnavailable: the status is sent already, so
        # the error middleware cuts the client's connection and it sees a truncated stream.
        # Closed at once, even when the client hangs up, so nothing reads the node after.
        said = chunks(node, upstream) if body is None else body
        with metrics.STREAMS.track_inprogress():
            async with contextlib.aclosing(said):
                async for chunk in said:
                    metrics.TO_CLIENT_BYTES.inc(len(chunk))
                    # A client that hung up raises here: its fault, not the node's.
                    await out.write(chunk)
    await out.write_eof()
    return out


class MergedStream(Protocol):
    """A stream the cluster merges from several nodes: started (which may fail before
    anything is sent), read in JSON lines, closed."""

    async def start(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


async def stream_merged(request: web.Request, stream: MergedStream) -> web.StreamResponse:
    """Answer with a merged stream: an error before it starts is the daemon's kind of error
    answer; after, lines go out as they come."""
    try:
        await stream.start()
        out = web.StreamResponse(headers={"Content-Type": "application/json"})
        await out.prepare(request)
        with metrics.STREAMS.track_inprogress():
            async for line in stream:
                metrics.TO_CLIENT_BYTES.inc(len(line))
                await out.write(line)
        await out.write_eof()
        return out
    finally:
        await stream.close()
