"""Keeps the index true to what nodes do on their own.

A container that a node removes by itself (`--rm`, a removal straight on the node) is
forgotten when its `destroy` event arrives. A lost event stream is resumed from the last
event seen, so nothing that happened meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

from swarmproxy.cluster.node import Node
from swarmproxy.errors import NodeUnavailable
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS
from swarmproxy.storage import Storage, StorageError

log = logging.getLogger("swarmproxy.watch")

FILTERS = quote(json.dumps({"type": ["container"], "event": ["destroy"]}))
RETRY_SECONDS = 2.0


class DestroyWatcher:
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
                    "destroy watch interrupted",
                    node=self.node.name,
                    error=str(e) or type(e).__name__,
                )
            except Exception:
                # Whatever a node sends (an oversized line, bad JSON), the watch goes on.
                log.exception("destroy watch failed", extra={"fields": {"node": self.node.name}})
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
                if not line.strip():
                    continue
                event = json.loads(line)
                container_id = event.get("id") or event.get("Actor", {}).get("ID", "")
                if container_id:
                    await self.storage.remove_container(container_id)
                self.since = event.get("timeNano", 0) / 1e9 or self.since
