"""Keeps the index, each node's load and each node's container list true to what the
node does on its own.

A node's container events are followed: a container the node removes by itself (`--rm`, a
removal straight on the node) is forgotten when its `destroy` event arrives; its `create`,
`start`, `die` and `destroy` keep the node's load current for the strategies; every event
that changes how `ps` shows a container (a network joined or left included) marks it stale
in the node's list. A lost event stream is resumed from the last event seen; the list is
read whole each time the stream opens, as events may have been lost meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from swarmproxy.cluster.node import Node
from swarmproxy.errors import NodeUnavailable
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS
from swarmproxy.scheduler.load import Reservation, reservation_of
from swarmproxy.storage import Storage, StorageError

log = logging.getLogger("swarmproxy.watch")

# `health_status` matches its every outcome ("health_status: healthy"), as the daemon
# filters it loosely.
CONTAINER_EVENTS = (
    "create", "start", "die", "destroy", "rename", "pause", "unpause", "health_status"
)  # fmt: skip
NETWORK_EVENTS = ("connect", "disconnect")
FILTERS = quote(
    json.dumps({"type": ["container", "network"], "event": [*CONTAINER_EVENTS, *NETWORK_EVENTS]})
)
RETRY_SECONDS = 2.0


class NodeWatcher:
    def __init__(
        self, node: Node, storage: Storage, forget: Callable[[str], Awaitable[None]]
    ) -> None:
        self.node = node
        self.storage = storage
        # Drops a container from the index and the process's routes.
        self.forget = forget
        # Seconds of the last event seen; where a reconnect resumes.
        self.since: float | None = None

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except (NodeUnavailable, StorageError, *TRANSPORT_ERRORS) as e:
                log_event(
                    log,
                    logging.DEBUG,
                    "event watch interrupted",
                    node=self.node.name,
                    error=str(e) or type(e).__name__,
                )
            except Exception:
                # Whatever a node sends (an oversized line, bad JSON), the watch goes on.
                log.exception("event watch failed", extra={"fields": {"node": self.node.name}})
            await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        path = f"/events?filters={FILTERS}"
        if self.since is not None:
            path += f"&since={self.since:.9f}"
        try:
            async with self.node.client.request("GET", path) as response:
                if response.status != 200:
                    raise self._refusal("events", response.status)
                await self._fill()
                async for line in response.content:
                    if line.strip():
                        await self._apply(json.loads(line))
        finally:
            self.node.containers.lost()

    def _refusal(self, what: str, status: int) -> NodeUnavailable:
        return NodeUnavailable(self.node.name, self.node.address, f"{what} answered {status}")

    async def _fill(self) -> None:
        """Read the node's container list whole, now that its events are followed: what
        changes from here on is marked by its event."""
        containers = self.node.containers
        async with containers.reading:
            since = containers.marks
            try:
                changes = await self.storage.container_changes({self.node.address: 0})
                containers.changes_seen = changes[self.node.address].count
            except StorageError:
                # Read at the first `ps` once storage is back: the list is read whole then.
                containers.changes_seen = None
            status, listing = await self.node.client.json("GET", "/containers/json?all=1")
            if status != 200 or not isinstance(listing, list):
                raise self._refusal("the container list", status)
            containers.fill(listing, since)

    async def _apply(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        if event.get("Type") == "network":
            joined = (actor.get("Attributes") or {}).get("container")
            if joined:
                self.node.containers.mark(joined)
        else:
            await self._container_event(event.get("id") or actor.get("ID", ""), event)
        self.since = event.get("timeNano", 0) / 1e9 or self.since

    async def _container_event(self, container_id: str, event: dict[str, Any]) -> None:
        if not container_id:
            return
        action = event.get("Action") or event.get("status")
        at = event.get("timeNano", 0) / 1e9 or float(event.get("time", 0))
        load = self.node.load
        containers = self.node.containers
        if action == "destroy":
            load.removed(container_id)
            containers.destroyed(container_id)
            await self.forget(container_id)
        elif action == "create":
            # Made behind the proxy's back (the proxy's own creates are counted already):
            # what it reserves is read once.
            load.created(
                container_id,
                None if load.knows(container_id) else await reserved_by(self.node, container_id),
            )
            containers.mark(container_id)
        elif action == "start":
            load.started(container_id)
            containers.started(container_id, at)
        elif action == "die":
            load.stopped(container_id)
            containers.finished(container_id, at)
        else:
            containers.mark(container_id)


async def reserved_by(node: Node, container_id: str) -> Reservation | None:
    status, inspected = await node.client.json("GET", f"/containers/{container_id}/json")
    return reservation_of(inspected) if status == 200 and isinstance(inspected, dict) else None


# Inspects at once while a node's load is read afresh.
_INSPECTS = 8


async def refresh_load(node: Node) -> None:
    """Read a node's load afresh: its containers, and what the ones not known yet reserve
    (an inspect each, a few at a time)."""
    status, listing = await node.client.json("GET", "/containers/json?all=1")
    if status != 200 or not isinstance(listing, list):
        return
    known = node.load.reserved
    reserved = {c["Id"]: known[c["Id"]] for c in listing if c["Id"] in known}
    room = asyncio.Semaphore(_INSPECTS)

    async def read(container_id: str) -> None:
        async with room:
            found = await reserved_by(node, container_id)
        if found is not None:
            reserved[container_id] = found

    await asyncio.gather(*(read(c["Id"]) for c in listing if c["Id"] not in reserved))
    node.load.replace(listing, reserved)
