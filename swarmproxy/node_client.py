"""The connection to one node: a pooled aiohttp session shared by aiodocker and raw forwarding.

Every transport failure leaves here as NodeUnavailable naming the node, and is counted on
the node's health; an answer from the daemon, whatever its status, is a success. A tcp://
node with TLS is spoken to over https, and its hijacked streams over TLS too.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiodocker
import aiohttp
from yarl import URL

from swarmproxy.cluster.health import NodeHealth
from swarmproxy.errors import NodeUnavailable
from swarmproxy.lean_client import LeanClient
from swarmproxy.tls import NodeTLS, open_tls_connection

# Transport failures: the node, not the request, is at fault.
TRANSPORT_ERRORS = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    OSError,
    asyncio.TimeoutError,
)

# Connections kept per node; a hijacked stream or a `logs -f` holds one each, so the
# pool must not be what limits concurrency.
POOL_LIMIT = 0  # unlimited
KEEPALIVE_SECONDS = 30.0
# Bytes a node's streamed answer may run ahead of its reader before the node is paused
# (twice this, as asyncio and aiohttp count it; a hijacked stream is read this way only
# until its 101). aiohttp's 64 KiB default paused the node every few reads; this bounds a
# slow client's stream.
STREAM_BUFFER = 256 * 1024
CONNECT_TIMEOUT = 10.0


def operation(method: str, path: str) -> str:
    """What was asked of a node, for its errors: `GET /containers/abc/logs` (no query)."""
    return f"{method} {path.partition('?')[0]}"


def operation_of(response: aiohttp.ClientResponse) -> str:
    return operation(response.method, response.url.path)


def decoded(payload: bytes, status: int) -> Any:
    """A node's JSON answer; None when empty. A refusal in plain text (some are) becomes the
    daemon's error body; a success that is not JSON raises ValueError."""
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except ValueError:
        if status < 400:
            raise
        return {"message": payload.decode(errors="replace").strip()}


# Made once: most calls have no bound of their own, and a fan-out makes thousands of calls.
_UNBOUNDED = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)


class BodyFailed(Exception):
    """The body being sent could not be read from its own source (a client that cut its
    upload): the sender's fault, not the node's."""


class NodeClient:
    def __init__(
        self, name: str, address: str, health: NodeHealth, tls: NodeTLS | None = None
    ) -> None:
        self.name = name
        self.address = address
        self.health = health
        self.ssl_context: ssl.SSLContext | None = None
        if address.startswith("unix://"):
            if tls is not None:
                raise ValueError(f"node {name}: TLS is for tcp:// nodes, not {address}")
            self.socket_path: str | None = address[len("unix://") :]
            self.host, self.port = "localhost", 0
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                self.socket_path, limit=POOL_LIMIT, keepalive_timeout=KEEPALIVE_SECONDS
            )
            # aiohttp routes unix:// URLs through the UnixConnector.
            self.base_url = "unix://localhost"
        else:
            parts = urlsplit(address)
            self.socket_path = None
            self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 2375
            if tls is not None:
                self.ssl_context = tls.client_context()
            connector = aiohttp.TCPConnector(
                limit=POOL_LIMIT,
                keepalive_timeout=KEEPALIVE_SECONDS,
                # True is aiohttp's default; it only matters for https URLs.
                ssl=self.ssl_context or True,
            )
            host = f"[{self.host}]" if ":" in self.host else self.host
            scheme = "http" if self.ssl_context is None else "https"
            self.base_url = f"{scheme}://{host}:{self.port}"
        self.session = aiohttp.ClientSession(
            connector=connector,
            # Bodies are relayed byte for byte: never decompress, never add headers.
            auto_decompress=False,
            read_bufsize=STREAM_BUFFER,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=_UNBOUNDED,
        )
        self.docker = aiodocker.Docker(url=self.base_url, connector=connector, session=self.session)
        self.lean = LeanClient(self.host, self.port, self.socket_path, self.ssl_context)

    def unavailable(self, error: BaseException, operation: str = "") -> NodeUnavailable:
        """The node failed `operation` (`GET /containers/…/logs`): counted on its health,
        and named in the error."""
        reason = str(error) or type(error).__name__
        # aiohttp chains what broke a streamed request body as the failure's cause.
        if not isinstance(error.__cause__, BodyFailed):
            self.health.record_failure(reason)
        return NodeUnavailable(self.name, self.address, reason, operation)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Any = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a raw request; `path` includes the query string, exactly as it goes out."""
        try:
            response = await self.session.request(
                method,
                # Already encoded by the caller (the client's raw query, quoted IDs).
                URL(self.base_url + path, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=_UNBOUNDED
                if timeout is None
                else aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
            )
        except TRANSPORT_ERRORS as e:
            raise self.unavailable(e, operation(method, path)) from e
        self.health.record_success()
        try:
            yield response
        finally:
            response.release()

    async def read(
        self,
        method: str,
        path: str,
        *,
        headers: Any = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """A small answer, whole: its status and body."""
        async with self.request(
            method, path, headers=headers, data=data, timeout=timeout
        ) as response:
            try:
                return response.status, await response.read()
            except TRANSPORT_ERRORS as e:
                raise self.unavailable(e, operation_of(response)) from e

    async def json(
        self, method: str, path: str, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        """A small JSON answer, for fan-out calls; raises NodeUnavailable on transport errors."""
        status, payload = await self.read(method, path, timeout=timeout)
        return status, decoded(payload, status)

    async def inspect_field(self, container_id: str, field: str) -> str:
        """One field of a container's inspect, or "" when the node cannot say."""
        try:
            status, body = await self.json("GET", f"/containers/{container_id}/json")
        except NodeUnavailable:
            return ""
        return str(body.get(field, "")) if status == 200 else ""

    async def open_raw(self, purpose: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A fresh connection for a hijacked stream (`purpose`, its request): it never goes
        back to the pool."""
        try:
            if self.socket_path is not None:
                return await asyncio.wait_for(
                    asyncio.open_unix_connection(self.socket_path, limit=STREAM_BUFFER),
                    CONNECT_TIMEOUT,
                )
            if self.ssl_context is not None:
                # Not asyncio's TLS: it cannot pass on the client's half-close (stdin EOF).
                return await asyncio.wait_for(
                    open_tls_connection(self.host, self.port, self.ssl_context, STREAM_BUFFER),
                    CONNECT_TIMEOUT,
                )
            return await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=STREAM_BUFFER),
                CONNECT_TIMEOUT,
            )
        except TRANSPORT_ERRORS as e:
            raise self.unavailable(e, purpose) from e

    async def version(self, timeout: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                result: dict[str, Any] = await self.docker.version()
        except (aiodocker.DockerError, *TRANSPORT_ERRORS, ValueError, TypeError, KeyError) as e:
            # Not the daemon's JSON either: the node is at fault, whatever it is.
            raise self.unavailable(e, "GET /version") from e
        self.health.record_success()
        return result

    async def info(self, timeout: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                result: dict[str, Any] = dict(await self.docker.system.info())
        except (aiodocker.DockerError, *TRANSPORT_ERRORS, ValueError, TypeError, KeyError) as e:
            # Not the daemon's JSON either: the node is at fault, whatever it is.
            raise self.unavailable(e, "GET /info") from e
        self.health.record_success()
        return result

    async def close(self) -> None:
        self.lean.close()
        await self.docker.close()
        await self.session.close()
