"""In-process storage: the embedded default, for a single proxy replica.

Every method runs to completion without awaiting, so on one event loop each call is atomic
with respect to the others; no locks are needed.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from dataclasses import dataclass

from swarmproxy.storage.base import (
    CHANGE_LOG_LIMIT,
    IMAGE_HISTORY_LIMIT,
    AmbiguousPrefix,
    ChangeLog,
    ContainerRecord,
    HealingData,
    ImageHistory,
    ImageRecord,
    NodeRecord,
    Storage,
    changes_after,
)


@dataclass
class _Container:
    node: str
    name: str = ""


class MemoryStorage(Storage):
    def __init__(self) -> None:
        self._containers: dict[str, _Container] = {}
        # Kept sorted so a prefix lookup is a bisect, not a scan of every container.
        self._ids: list[str] = []
        self._names: dict[str, str] = {}
        self._execs: dict[str, str] = {}
        # Apart from the container records: an exec may be stored before its container.
        self._container_execs: dict[str, set[str]] = {}
        self._images: dict[str, ImageRecord] = {}
        self._nodes: dict[str, NodeRecord] = {}
        # Monotonic deadlines: the wall-clock `locked_until` on the node is for display
        # only, a clock step must not release or prolong a lock.
        self._locks: dict[str, float] = {}
        self._reschedulables: dict[str, str] = {}
        self._volumes: dict[str, set[str]] = {}
        self._counters: dict[str, int] = {}
        # Node address -> changes counted, and the newest changed container IDs first.
        self._changes: dict[str, tuple[int, list[str]]] = {}

    @classmethod
    async def copy_of(cls, storage: Storage) -> MemoryStorage:
        """What `storage` holds of nodes, containers with their names, images and volumes
        (execs, name claims in progress and counters are left behind): the ground dry mode
        plans on."""
        memory = cls()
        for node in await storage.retrieve_nodes():
            await memory.store_node(node)
        for container in await storage.retrieve_containers():
            await memory.store_container(container.id, container.node, container.name)
            if container.name:
                memory._names[container.name] = container.id
        for image in await storage.retrieve_images():
            memory._images[image.repository] = image
        memory._volumes = await storage.retrieve_volumes()
        return memory

    # --- containers -------------------------------------------------------------
    async def store_container(self, container_id: str, node: str, name: str = "") -> None:
        existing = self._containers.get(container_id)
        if existing is None:
            self._containers[container_id] = _Container(node, name)
            bisect.insort(self._ids, container_id)
            return
        existing.node = node
        if name:
            existing.name = name

    async def retrieve_container(self, container_id: str) -> ContainerRecord | None:
        container = self._containers.get(container_id)
        if container is None:
            return None
        return ContainerRecord(container_id, container.node, container.name)

    async def remove_container(self, container_id: str) -> None:
        for exec_id in self._container_execs.pop(container_id, set()):
            if self._execs.get(exec_id) == container_id:
                del self._execs[exec_id]
        container = self._containers.pop(container_id, None)
        if container is None:
            return
        i = bisect.bisect_left(self._ids, container_id)
        if i < len(self._ids) and self._ids[i] == container_id:
            del self._ids[i]
        if container.name and self._names.get(container.name) == container_id:
            del self._names[container.name]

    async def retrieve_containers(self) -> list[ContainerRecord]:
        return [ContainerRecord(cid, c.node, c.name) for cid, c in self._containers.items()]

    async def resolve_container_prefix(self, prefix: str) -> str | None:
        if not prefix:
            return None
        i = bisect.bisect_left(self._ids, prefix)
        matches = [cid for cid in self._ids[i : i + 2] if cid.startswith(prefix)]
        if not matches:
            return None
        if len(matches) > 1:
            raise AmbiguousPrefix(prefix)
        return matches[0]

    # --- names ------------------------------------------------------------------
    async def reserve_name(self, name: str, owner: str) -> str | None:
        current = self._names.get(name)
        if current is not None and current != owner:
            return current
        self._names[name] = owner
        return None

    async def assign_name(self, name: str, container_id: str, expected_owner: str) -> bool:
        current = self._names.get(name)
        # Already moved to container_id counts as success, matching the Redis backend,
        # where a retried call must not report failure for its own earlier success.
        if current != expected_owner and current != container_id:
            return False
        self._names[name] = container_id
        container = self._containers.get(container_id)
        if container is not None:
            container.name = name
        return True

    async def retrieve_name(self, name: str) -> str | None:
        return self._names.get(name)

    async def release_name(self, name: str, owner: str) -> None:
        if self._names.get(name) != owner:
            return
        del self._names[name]
        container = self._containers.get(owner)
        if container is not None and container.name == name:
            container.name = ""

    # --- execs ------------------------------------------------------------------
    async def store_exec(self, exec_id: str, container_id: str) -> None:
        await self.remove_exec(exec_id)
        self._execs[exec_id] = container_id
        self._container_execs.setdefault(container_id, set()).add(exec_id)

    async def retrieve_exec(self, exec_id: str) -> str | None:
        return self._execs.get(exec_id)

    async def remove_exec(self, exec_id: str) -> None:
        container_id = self._execs.pop(exec_id, None)
        if container_id is None:
            return
        execs = self._container_execs.get(container_id)
        if execs is not None:
            execs.discard(exec_id)
            if not execs:
                del self._container_execs[container_id]

    # --- images -----------------------------------------------------------------
    async def store_image(self, repository: str, image_id: str, node: str) -> None:
        image = self._images.get(repository)
        if image is None:
            image = self._images[repository] = ImageRecord(repository)
        image.nodes.add(node)
        image.last_node = node
        image.last_id = image_id
        entry = ImageHistory(node, image_id)
        # A repeated pair moves to the newest end instead of crowding out older pairs.
        image.history = [h for h in image.history if h != entry]
        image.history.append(entry)
        del image.history[: -(IMAGE_HISTORY_LIMIT + len(image.nodes))]

    async def retrieve_image(self, repository: str) -> ImageRecord | None:
        image = self._images.get(repository)
        return None if image is None else _image_copy(image)

    async def remove_image(self, repository: str, image_id: str, node: str) -> None:
        image = self._images.get(repository)
        if image is None:
            return
        image.nodes.discard(node)
        if not image.nodes:
            del self._images[repository]
            return
        image.history = [h for h in image.history if h != ImageHistory(node, image_id)]
        if image.last_node == node:
            _fall_back_to_history(image)

    async def set_image_digest(self, repository: str, digest: str) -> None:
        image = self._images.get(repository)
        if image is not None:
            image.last_digest = digest

    async def retrieve_images(self) -> list[ImageRecord]:
        return [_image_copy(image) for image in self._images.values()]

    # --- nodes ------------------------------------------------------------------
    async def store_node(self, node: NodeRecord) -> None:
        if node.address in self._nodes:
            raise ValueError(f"node {node.address} is already registered")
        self._nodes[node.address] = _node_copy(node)

    async def retrieve_nodes(self) -> list[NodeRecord]:
        return [_node_copy(node) for node in self._nodes.values()]

    async def retrieve_nodes_by_metadata(self, metadata: dict[str, str]) -> list[NodeRecord]:
        return [
            _node_copy(node)
            for node in self._nodes.values()
            if all(node.metadata.get(k) == v for k, v in metadata.items())
        ]

    async def retrieve_node(self, address: str) -> NodeRecord | None:
        node = self._nodes.get(address)
        return None if node is None else _node_copy(node)

    async def update_node(self, node: NodeRecord) -> None:
        if node.address not in self._nodes:
            raise KeyError(node.address)
        self._nodes[node.address] = _node_copy(node)

    async def remove_node(self, address: str) -> None:
        if address not in self._nodes:
            raise KeyError(address)
        del self._nodes[address]
        self._locks.pop(address, None)

    async def remove_nodes(self, addresses: list[str]) -> None:
        for address in addresses:
            self._nodes.pop(address, None)
            self._locks.pop(address, None)

    async def lock_node_for_healing(self, address: str, is_failure: bool, timeout: float) -> bool:
        node = self._nodes.get(address)
        if node is None:
            raise KeyError(address)
        if self._locks.get(address, 0.0) > time.monotonic():
            return False
        self._locks[address] = time.monotonic() + timeout
        node.healing = HealingData(locked_until=time.time() + timeout, is_failure=is_failure)
        return True

    async def extend_node_lock(self, address: str, timeout: float) -> None:
        # Only a held lock is extended: an expired one may already belong to someone else.
        if self._locks.get(address, 0.0) <= time.monotonic():
            return
        self._locks[address] = time.monotonic() + timeout
        node = self._nodes.get(address)
        if node is not None:
            node.healing.locked_until = time.time() + timeout

    async def unlock_node(self, address: str) -> None:
        self._locks.pop(address, None)
        node = self._nodes.get(address)
        if node is not None:
            node.healing = HealingData()

    # --- volumes ----------------------------------------------------------------
    async def store_volume(self, name: str, node: str) -> None:
        self._volumes.setdefault(name, set()).add(node)

    async def retrieve_volume(self, name: str) -> set[str]:
        return set(self._volumes.get(name, ()))

    async def remove_volume(self, name: str, node: str) -> None:
        holders = self._volumes.get(name)
        if holders is None:
            return
        holders.discard(node)
        if not holders:
            del self._volumes[name]

    async def retrieve_volumes(self) -> dict[str, set[str]]:
        return {name: set(holders) for name, holders in self._volumes.items()}

    # --- counters ---------------------------------------------------------------
    async def increment(self, key: str) -> int:
        self._counters[key] = value = self._counters.get(key, 0) + 1
        return value

    async def counter(self, key: str) -> int:
        return self._counters.get(key, 0)

    # --- container changes ------------------------------------------------------
    async def note_container_change(self, node: str, container_id: str) -> None:
        count, ids = self._changes.get(node, (0, []))
        self._changes[node] = (count + 1, [container_id, *ids[: CHANGE_LOG_LIMIT - 1]])

    async def container_changes(self, since: dict[str, int]) -> dict[str, ChangeLog]:
        logs = {}
        for node, seen in since.items():
            count, ids = self._changes.get(node, (0, []))
            logs[node] = ChangeLog(count, changes_after(count, seen, ids))
        return logs

    # --- rescheduling -----------------------------------------------------------
    async def store_reschedulable(self, container_id: str, plan: str) -> None:
        self._reschedulables[container_id] = plan

    async def retrieve_reschedulables(self) -> dict[str, str]:
        return dict(self._reschedulables)

    async def remove_reschedulable(self, container_id: str) -> None:
        self._reschedulables.pop(container_id, None)


def _fall_back_to_history(image: ImageRecord) -> None:
    """Point last node/ID at the newest history entry from a node that still holds it."""
    for entry in reversed(image.history):
        if entry.node in image.nodes:
            image.last_node, image.last_id = entry.node, entry.image_id
            return
    image.last_node = image.last_id = ""


# Copies in and out, so that no caller shares a record with the store. Made by hand rather
# than with copy.deepcopy, which cost milliseconds a call on 1000 nodes (the health round
# reads every node record; each placement reads its image's record).
def _image_copy(image: ImageRecord) -> ImageRecord:
    # History entries are frozen: the set and the list are what a caller could change.
    return dataclasses.replace(image, nodes=set(image.nodes), history=list(image.history))


def _node_copy(node: NodeRecord) -> NodeRecord:
    return dataclasses.replace(
        node,
        metadata=dict(node.metadata),
        healing=dataclasses.replace(node.healing),
        tls=dict(node.tls),
    )
