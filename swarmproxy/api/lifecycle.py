"""SIGTERM and SIGHUP: a graceful shutdown, and a reload that drops no connection.

Shutdown is aiohttp's own: the listeners close (a new connection is refused), idle kept-alive
connections are closed, and requests under way (logs -f, attach, events) run on; what is
left when `server.shutdown_timeout` is up is cut.

Reload reads the config file again and applies its nodes and its policy. Which registered
nodes are the config's: the addresses of the config last applied (the one the proxy started
with, then each reload's), remembered in this process. A node registered at run time through
the admin API is not among them unless the config lists it too, so a reload never
unregisters it. A reload applies the config's nodes as a start does: every one of them that
is not registered is registered (through the `before_node_register` hooks); each that the
previous config listed and the new one does not is unregistered (through the
`before_node_unregister` hooks); a listed node whose labels changed gets them, one whose
name or TLS changed is registered again. Everything else in the file needs a restart, and
the log says which sections changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence

from aiohttp import web

from swarmproxy.api.policy import set_policy
from swarmproxy.cluster import Cluster
from swarmproxy.config import Config, ConfigError, NodeConfig
from swarmproxy.errors import DockerError, NotFound
from swarmproxy.log import log_event
from swarmproxy.storage import NodeRecord

log = logging.getLogger("swarmproxy.lifecycle")

# What a reload applies; a change anywhere else waits for a restart.
RELOADED = frozenset({"nodes", "policy"})


class Reloader:
    """Reloads when asked (`request`, the SIGHUP handler), one reload at a time; signals
    that arrive during one are served by a single reload after it."""

    def __init__(
        self, app: web.Application, cluster: Cluster, config: Config, load: Callable[[], Config]
    ) -> None:
        self._app = app
        self._cluster = cluster
        self._config = config
        self._load = load
        self._wanted = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="reload")

    def request(self) -> None:
        self._wanted.set()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.reload()
            except Exception as e:
                # The proxy serves on with what it has; the next SIGHUP tries again.
                log.error("reload failed", exc_info=e)

    async def reload(self) -> bool:
        """Apply the config file as it is now; False (the running config kept) when it does
        not load."""
        try:
            new = self._load()
        except ConfigError as e:
            log_event(log, logging.ERROR, "reload refused: config kept", error=str(e))
            return False
        await self._apply_nodes(self._config.nodes, new.nodes)
        set_policy(self._app, new.policy)
        restart = [
            f.name
            for f in dataclasses.fields(Config)
            if f.name not in RELOADED and getattr(new, f.name) != getattr(self._config, f.name)
        ]
        if restart:
            log_event(
                log,
                logging.WARNING,
                "config changes that need a restart",
                sections=",".join(restart),
            )
        self._config = new
        log_event(
            log,
            logging.INFO,
            "reloaded",
            nodes=len(self._cluster.nodes),
            policy="on" if new.policy.enabled else "off",
        )
        return True

    async def _apply_nodes(self, old: list[NodeConfig], new: list[NodeConfig]) -> None:
        listed = {n.address for n in new}
        for node in old:
            if node.address not in listed:
                await self._unregister(node)
        before = {n.address: n for n in old}
        for node in new:
            previous = before.get(node.address)
            if previous is not None and previous != node and self._registered(node):
                if (previous.name, previous.tls) == (node.name, node.tls):
                    await self._relabel(node)
                    continue
                if not await self._unregister(node):
                    continue
            if not self._registered(node):
                await self._register(node)

    def _registered(self, node: NodeConfig) -> bool:
        return any(n.address == node.address for n in self._cluster.nodes)

    async def _register(self, node: NodeConfig) -> None:
        try:
            await self._cluster.register(node.address, node.name, node.labels, node.tls)
        except DockerError as e:
            # A hook's refusal, or a name another node has: that node is not served.
            log_event(log, logging.ERROR, "node not registered", addr=node.address, why=e.message)

    async def _unregister(self, node: NodeConfig) -> bool:
        try:
            await self._cluster.unregister(node.address)
        except NotFound:
            return True  # gone already (unregistered through the admin API)
        except DockerError as e:
            log_event(log, logging.ERROR, "node kept", addr=node.address, why=e.message)
            return False
        return True

    async def _relabel(self, node: NodeConfig) -> None:
        def change(record: NodeRecord) -> None:
            record.metadata = dict(node.labels)

        try:
            await self._cluster.atomic_update_node(node.address, change)
        except DockerError as e:
            log_event(log, logging.ERROR, "node not relabelled", addr=node.address, why=e.message)
            return
        log_event(log, logging.INFO, "node relabelled", node=node.name, labels=node.labels)


async def shut_down(runners: Sequence[web.BaseRunner], timeout: float) -> None:
    """Stop every runner at once; cut what is still under way after `timeout` seconds.

    aiohttp's shutdown waits `shutdown_timeout` for handlers, then as long again before it
    cancels them (and rounds longer timeouts up to the second): closing the connections
    left at `timeout` makes it the whole bound."""
    servers = [runner.server for runner in runners if runner.server is not None]
    cleanup = asyncio.gather(*(runner.cleanup() for runner in runners))
    try:
        await asyncio.wait_for(asyncio.shield(cleanup), timeout)
    except TimeoutError:
        left = [connection for server in servers for connection in server.connections]
        log_event(log, logging.WARNING, "cutting what is left", connections=len(left))
        for connection in left:
            # The handler is cancelled as if its client had gone (handler_cancellation).
            connection.force_close()
        await cleanup
