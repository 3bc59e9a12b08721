"""The index made true to the nodes again: the daemons are the source of truth, storage is
only the cluster-wide index of them.

Each answering node's containers (with their names), images and volumes are compared with
the index: entries whose thing is gone are dropped, things the index does not know are
added. A node that does not answer keeps its entries. Run at start, every
`[storage] reconcile_interval` seconds, and when storage was found wiped; a lookup miss
asks the nodes on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from swarmproxy.cluster.images import index_keys
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import DockerError
from swarmproxy.log import log_event
from swarmproxy.storage import ContainerRecord, StorageError

log = logging.getLogger("swarmproxy.reconcile")


@dataclass
class Reconciled:
    """What one reconciliation changed, for its log line and for tests."""

    added: int = 0
    dropped: int = 0
    renamed: int = 0
    images_added: int = 0
    images_dropped: int = 0
    volumes_added: int = 0
    volumes_dropped: int = 0
    # Nodes that did not answer, whose entries were left alone.
    skipped: int = 0

    def merge(self, other: Reconciled) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


def primary_name(container: dict[str, Any]) -> str:
    """A listed container's own name: a link adds `/other/alias` entries to its Names."""
    for name in container.get("Names") or []:
        if isinstance(name, str) and name.count("/") == 1:
            return name.removeprefix("/")
    return ""


class Reconciliation(ClusterParts):
    async def reconcile(self) -> Reconciled:
        """Bring the index in step with every node that answers."""
        # Read before the nodes are listed: an entry written after this reading is for a
        # container made since, which the listing may not show yet, and must not be dropped.
        indexed: dict[str, list[ContainerRecord]] = {}
        for record in await self.storage.retrieve_containers():
            indexed.setdefault(record.node, []).append(record)
        volumes = await self.storage.retrieve_volumes()
        images = await self.storage.retrieve_images()
        total = Reconciled()
        for node in self.callable_nodes():
            try:
                done = await self._reconcile_node(node, indexed.get(node.address, []))
                done.merge(await self._reconcile_images(node, images))
                done.merge(await self._reconcile_volumes(node, volumes))
            except (DockerError, StorageError) as e:
                log_event(log, logging.WARNING, "node not reconciled", node=node.name, error=str(e))
                total.skipped += 1
                continue
            total.merge(done)
        log_event(log, logging.INFO, "index reconciled", **vars(total))
        return total

    async def _reconcile_node(self, node: Node, indexed: list[ContainerRecord]) -> Reconciled:
        listing = await self._listing(node, "/containers/json?all=1")
        present = {str(c["Id"]): primary_name(c) for c in listing}
        done = Reconciled()
        for record in indexed:
            if record.id not in present:
                await self.storage.remove_container(record.id)
                await self.storage.remove_reschedulable(record.id)
                done.dropped += 1
        known = {record.id: record for record in indexed}
        for container_id, name in present.items():
            entry = known.get(container_id)
            if entry is None:
                await self.adopt_container(container_id, node, name)
                done.added += 1
            elif name and entry.name != name:
                # Renamed straight on the node: the index follows, if the name is free.
                await self.index_name(container_id, node, name)
                done.renamed += 1
        return done

    async def _reconcile_images(self, node: Node, images: list[Any]) -> Reconciled:
        listing = await self._listing(node, "/images/json")
        held: set[str] = set()
        for entry in listing:
            if entry.get("Id"):
                held |= index_keys(entry)[2]
        done = Reconciled()
        for record in images:
            if node.address in record.nodes and record.repository not in held:
                await self.forget_image_on(node, record.repository)
                done.images_dropped += 1
        done.images_added = await self.learn_images(node)
        return done

    async def _reconcile_volumes(self, node: Node, volumes: dict[str, set[str]]) -> Reconciled:
        status, answer = await node.client.json("GET", "/volumes")
        if status != 200 or not isinstance(answer, dict):
            raise DockerError(f"node {node.name} could not list its volumes", 502)
        present = {str(v["Name"]) for v in answer.get("Volumes") or [] if v.get("Name")}
        done = Reconciled()
        for name in present:
            if node.address not in volumes.get(name, set()):
                await self.storage.store_volume(name, node.address)
                done.volumes_added += 1
        for name, holders in volumes.items():
            if node.address in holders and name not in present:
                await self.storage.remove_volume(name, node.address)
                done.volumes_dropped += 1
        return done

    async def _listing(self, node: Node, path: str) -> list[dict[str, Any]]:
        status, listing = await node.client.json("GET", path)
        if status != 200 or not isinstance(listing, list):
            raise DockerError(f"node {node.name} answered {status} to GET {path}", 502)
        return listing
