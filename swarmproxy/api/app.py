"""The HTTP front: the application and the listeners it serves on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from pathlib import Path

from aiohttp import web

from swarmproxy.api import middleware, routes
from swarmproxy.api.admin import make_admin_app
from swarmproxy.api.context import CLUSTER, CONFIG
from swarmproxy.cluster import Cluster
from swarmproxy.config import Config
from swarmproxy.log import log_event
from swarmproxy.tls import ServerTLS, server_stream

log = logging.getLogger("swarmproxy.server")

# A container config can carry a large environment; archives stream and are not bounded.
MAX_BODY = 64 * 1024 * 1024
SHUTDOWN_SECONDS = 3.0


def make_app(cluster: Cluster, config: Config) -> web.Application:
    app = web.Application(
        middlewares=[middleware.request_log, middleware.docker_errors, middleware.api_version],
        client_max_size=MAX_BODY,
    )
    app[CLUSTER] = cluster
    app[CONFIG] = config
    app.on_response_prepare.append(middleware.daemon_headers)
    routes.register(app)
    return app


def _remove_stale_socket(path: str) -> None:
    """A socket file left by an earlier run would make the bind fail."""
    with contextlib.suppress(FileNotFoundError):
        if Path(path).is_socket():
            os.unlink(path)


class TLSSite(web.BaseSite):
    """A TCP listener speaking TLS through swarmproxy.tls rather than the event loop's TLS,
    which closes a connection on the client's half-close: a hijacked stream's stdin EOF."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, context: ssl.SSLContext
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._context = context

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: server_stream(self._context, server()),
            self._host,
            self._port,
            reuse_address=True,
        )


async def start_listeners(
    runner: web.AppRunner, addresses: list[str], tls: ServerTLS | None = None
) -> None:
    """Serves on every address; with `tls`, every tcp:// one speaks TLS (unix sockets stay
    plain: their file permissions guard them)."""
    context = None if tls is None else tls.server_context()
    for address in addresses:
        site: web.BaseSite
        if address.startswith("unix://"):
            path = address[len("unix://") :]
            _remove_stale_socket(path)
            site = web.UnixSite(runner, path)
        else:
            host, _, port = address[len("tcp://") :].rpartition(":")
            if context is None:
                site = web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True)
            else:
                site = TLSSite(runner, host.strip("[]"), int(port), context)
        await site.start()
        log_event(log, logging.INFO, "listening", address=address, tls=_tls_mode(site, tls))


def _tls_mode(site: web.BaseSite, tls: ServerTLS | None) -> str:
    if tls is None or not isinstance(site, TLSSite):
        return "off"
    return "on" if tls.client_ca is None else "client certificates required"


async def serve(config: Config, cluster: Cluster | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    cluster = cluster or Cluster.from_config(config)
    await cluster.start()
    app = make_app(cluster, config)
    # A client that goes away cancels its handler, and with it the request to the node.
    # Open streams (events, logs -f, attach) would hold a shutdown for aiohttp's default
    # minute: an orchestrator's stop grace is shorter than that.
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    admin = web.AppRunner(make_admin_app(cluster, config.admin), access_log=None)
    await admin.setup()
    try:
        await start_listeners(runner, config.server.listen, config.server.tls)
        # The admin API speaks plain HTTP: keep it on loopback or a unix socket.
        await start_listeners(admin, config.admin.listen)
        log_event(
            log,
            logging.INFO,
            "serving",
            nodes=len(cluster.nodes),
            ready=len(cluster.ready_nodes()),
            storage=config.storage.url.split("@")[-1],
        )
        await stop.wait()
    finally:
        log_event(log, logging.INFO, "shutting down")
        await admin.cleanup()
        await runner.cleanup()
        await cluster.close()
