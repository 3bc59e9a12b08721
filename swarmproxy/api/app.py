"""The HTTP front: the application and the listeners it serves on."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from swarmproxy.api import connections, middleware, policy, routes
from swarmproxy.api.admin import make_admin_app
from swarmproxy.api.context import CLUSTER, CONFIG
from swarmproxy.api.lifecycle import Reloader, shut_down
from swarmproxy.cluster import Cluster
from swarmproxy.config import Config
from swarmproxy.log import log_event
from swarmproxy.tls import ServerTLS, server_stream
from swarmproxy.workers import Workers

log = logging.getLogger("swarmproxy.server")


def make_app(cluster: Cluster, config: Config) -> web.Application:
    app = web.Application(
        middlewares=[
            connections.heads,
            middleware.request_log,
            middleware.docker_errors,
            middleware.api_version,
            policy.authorize,
        ],
        # Bounds request.read(): the JSON bodies the proxy reads whole. Streams are not read so.
        client_max_size=config.server.max_json_body,
    )
    app[CLUSTER] = cluster
    app[CONFIG] = config
    policy.set_policy(app, config.policy)
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
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        context: ssl.SSLContext,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._context = context
        self._reuse_port = reuse_port

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
            reuse_port=self._reuse_port,
        )


def bind_unix(address: str) -> socket.socket:
    """A listening unix socket, bound before workers are forked so that they share it: a
    unix socket cannot be bound twice, as a tcp:// port is with SO_REUSEPORT."""
    path = address[len("unix://") :]
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(socket.SOMAXCONN)
    return sock


async def start_listeners(
    runner: web.AppRunner,
    addresses: list[str],
    tls: ServerTLS | None = None,
    workers: Workers | None = None,
) -> None:
    """Serves on every address; with `tls`, every tcp:// one speaks TLS (unix sockets stay
    plain: their file permissions guard them). As one of `workers`, a tcp:// port is bound
    with SO_REUSEPORT beside the other workers, and a unix socket is the one they share."""
    context = None if tls is None else tls.server_context()
    reuse_port = workers is not None
    for address in addresses:
        site: web.BaseSite
        if address.startswith("unix://"):
            if workers is not None:
                site = web.SockSite(runner, workers.unix_sockets[address])
            else:
                path = address[len("unix://") :]
                _remove_stale_socket(path)
                site = web.UnixSite(runner, path)
        else:
            host, _, port = address[len("tcp://") :].rpartition(":")
            if context is None:
                site = web.TCPSite(
                    runner,
                    host.strip("[]"),
                    int(port),
                    reuse_address=True,
                    reuse_port=reuse_port,
                )
            else:
                site = TLSSite(runner, host.strip("[]"), int(port), context, reuse_port)
        await site.start()
        log_event(log, logging.INFO, "listening", address=address, tls=_tls_mode(site, tls))


def _tls_mode(site: web.BaseSite, tls: ServerTLS | None) -> str:
    if tls is None or not isinstance(site, TLSSite):
        return "off"
    return "on" if tls.client_ca is None else "client certificates required"


async def serve(
    config: Config,
    cluster: Cluster | None = None,
    reload: Callable[[], Config] | None = None,
    workers: Workers | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then let requests and streams under way finish for up to
    `server.shutdown_timeout`. With `reload` (the config file read again), SIGHUP applies
    its nodes and policy (swarmproxy.api.lifecycle). `workers`: this process is one of
    several serving the same listeners (swarmproxy.workers)."""
    cluster = cluster or Cluster.from_config(config)
    await cluster.start()
    # What start-up made lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (profiled: 42% of `ps` time at 1000 nodes).
    gc.freeze()
    app = make_app(cluster, config)
    # A client that goes away cancels its handler, and with it the request to the node.
    # Open streams (events, logs -f, attach) hold a shutdown for up to shutdown_timeout;
    # then they are cut.
    runner = connections.ProxyRunner(
        app,
        config.server,
        fast_lane=True,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.server.shutdown_timeout,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    admin = web.AppRunner(
        make_admin_app(cluster, config.admin),
        access_log=None,
        shutdown_timeout=config.server.shutdown_timeout,
    )
    await admin.setup()
    reloader = None if reload is None else Reloader(app, cluster, config, reload)
    if reloader is not None:
        loop.add_signal_handler(signal.SIGHUP, reloader.request)
    try:
        await start_listeners(runner, config.server.listen, config.server.tls, workers)
        # The admin API speaks plain HTTP: keep it on loopback or a unix socket.
        await start_listeners(admin, config.admin.listen, workers=workers)
        log_event(
            log,
            logging.INFO,
            "serving",
            worker=workers.index if workers is not None else 0,
            nodes=len(cluster.nodes),
            ready=len(cluster.ready_nodes()),
            storage=config.storage.url.split("@")[-1],
        )
        await stop.wait()
    finally:
        server = runner.server
        log_event(
            log,
            logging.INFO,
            "shutting down",
            connections=0 if server is None else len(server.connections),
            timeout=config.server.shutdown_timeout,
        )
        if reloader is not None:
            await reloader.close()
        await shut_down([runner, admin], config.server.shutdown_timeout)
        await cluster.close()
        log_event(log, logging.INFO, "stopped")
