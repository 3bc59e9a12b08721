"""Keeps the index and each node's load true to what the node does on its own.

A node's container events are followed: a container the node removes by itself (`--rm`, a
removal straight on the node) is forgotten when its `destroy` event arrives, and its
`create`, `start`, `die` and `destroy` keep the node's load current for the strategies. A
lost event stream is resumed from the last event seen, so nothing that happened meanwhile
is missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

from swarmproxy.cluster.node import Node
from swarmproxy.errors import NodeUnavailable
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS
from swarmproxy.scheduler.load import Reservation, reservation_of
from swarmproxy.storage import Storage, StorageError

log = logging.getLogger("swarmproxy.watch")

EVENTS = ("create", "start", "die", "destroy")
FILTERS = quote(json.dumps({"type": ["container"], "event": list(EVENTS)}))
RETRY_SECONDS = 2.0


class NodeWatcher:
    def __init__(self, node: Node, storage: Storage) -> None:
        self.node = node
        self.storage = storage
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
        async with self.node.client.request("GET", path) as response:
            if response.status != 200:
                raise NodeUnavailable(
                    self.node.name, self.node.address, f"events answered {response.status}"
                )
            async for line in response.content:
                if line.strip():
                    await self._apply(json.loads(line))

    async def _apply(self, event: dict[str, Any]) -> None:
        container_id = event.get("id") or event.get("Actor", {}).get("ID", "")
        action = event.get("Action") or event.get("status")
        load = self.node.load
        if container_id and action == "destroy":
            load.removed(container_id)
            await self.storage.remove_container(container_id)
            await self.storage.remove_reschedulable(container_id)
        elif container_id and action == "create":
            # Made behind the proxy's back (the proxy's own creates are counted already):
            # what it reserves is read once.
            load.created(
                container_id,
                None if load.knows(container_id) else await reserved_by(self.node, container_id),
            )
        elif container_id and action == "start":
            load.started(container_id)
        elif container_id and action == "die":
            load.stopped(container_id)
        self.since = event.get("timeNano", 0) / 1e9 or self.since


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
