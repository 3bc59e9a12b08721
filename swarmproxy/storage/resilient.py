"""Storage that outlives an outage of its backend (Redis down, or unreachable).

Every answer the backend gives about containers, names and execs is also kept in process
(a container's node never changes during its life). While the backend is unreachable:

- reads of containers, names and execs are answered from what is kept here, and a miss
  falls through to the cluster, which asks the nodes;
- writes that the index can learn again from the nodes later (a container made or
  removed, an image pulled, a volume) are kept here, or skipped;
- what needs the shared store to be safe is refused with StorageError (a 503): reserving a
  name, which could not be made unique cluster-wide; registering or changing nodes;
- the backend is probed every second; when it answers again, the `on_recovery`
  callbacks run (the cluster reconciles the index with the nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from swarmproxy.log import log_event
from swarmproxy.storage.base import (
    AmbiguousPrefix,
    ChangeLog,
    ContainerRecord,
    ImageRecord,
    NodeRecord,
    Storage,
    StorageError,
)

log = logging.getLogger("swarmproxy.storage")

T = TypeVar("T")

# Entries kept in process per kind: enough for a large cluster, bounded all the same.
KEPT = 200_000
PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class Outage:
    since: float
    error: str


class _Kept(OrderedDict[str, str]):
    """A bounded map, the least recently used entries dropped first."""

    def keep(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > KEPT:
            self.popitem(last=False)


class ResilientStorage(Storage):
    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.outage: Outage | None = None
        self.on_recovery: list[Callable[[], None]] = []
        self._nodes = _Kept()  # container ID -> node address
        self._container_names = _Kept()  # container ID -> name
        self._names = _Kept()  # name -> container ID
        self._execs = _Kept()  # exec ID -> container ID
        self._counters: dict[str, int] = {}
        self._probe: asyncio.Task[None] | None = None

    # --- the one rule: the backend, else what is kept here ------------------------------
    async def _or(self, call: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
        """The backend's answer; while it is unreachable, `fallback`'s."""
        if self.outage is not None:
            return fallback()
        try:
            return await call()
        except StorageError as e:
            self._lost(e)
            return fallback()

    async def _needs_backend(self, call: Callable[[], Awaitable[T]]) -> T:
        """For what must not be done without the shared store."""
        if self.outage is not None:
            since = time.strftime("%H:%M:%S", time.localtime(self.outage.since))
            raise StorageError(f"storage is unavailable since {since}: {self.outage.error}")
        try:
            return await call()
        except StorageError as e:
            self._lost(e)
            raise

    def _lost(self, error: StorageError) -> None:
        if self.outage is not None:
            return
        self.outage = Outage(time.time(), str(error))
        log_event(log, logging.ERROR, "storage unavailable", error=str(error))
        self._probe = asyncio.get_running_loop().create_task(self._wait_for_backend())

    async def _wait_for_backend(self) -> None:
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            with contextlib.suppress(StorageError):
                await self.inner.ping()
                break
        lasted = time.time() - (self.outage.since if self.outage else time.time())
        self.outage = None
        log_event(log, logging.WARNING, "storage back", after_seconds=round(lasted, 1))
        for callback in self.on_recovery:
            callback()

    def _remember(self, record: ContainerRecord | None) -> ContainerRecord | None:
        if record is not None:
            self._nodes.keep(record.id, record.node)
            if record.name:
                self._container_names.keep(record.id, record.name)
                self._names.keep(record.name, record.id)
        return record

    def _kept_container(self, container_id: str) -> ContainerRecord | None:
        node = self._nodes.get(container_id)
        if node is None:
            return None
        return ContainerRecord(container_id, node, self._container_names.get(container_id, ""))

    def _forget(self, container_id: str) -> None:
        self._nodes.pop(container_id, None)
        name = self._container_names.pop(container_id, None)
        if name is not None and self._names.get(name) == container_id:
            del self._names[name]

    # --- containers -------------------------------------------------------------
    async def store_container(self, container_id: str, node: str, name: str = "") -> None:
        self._remember(ContainerRecord(container_id, node, name))
        await self._or(lambda: self.inner.store_container(container_id, node, name), lambda: None)

    async def retrieve_container(self, container_id: str) -> ContainerRecord | None:
        record = await self._or(
            lambda: self.inner.retrieve_container(container_id),
            lambda: self._kept_container(container_id),
        )
        return self._remember(record)

    async def remove_container(self, container_id: str) -> None:
        self._forget(container_id)
        await self._or(lambda: self.inner.remove_container(container_id), lambda: None)

    async def retrieve_containers(self) -> list[ContainerRecord]:
        return await self._needs_backend(lambda: self.inner.retrieve_containers())

    async def resolve_container_prefix(self, prefix: str) -> str | None:
        return await self._or(
            lambda: self.inner.resolve_container_prefix(prefix), lambda: self._kept_prefix(prefix)
        )

    def _kept_prefix(self, prefix: str) -> str | None:
        found = [container_id for container_id in self._nodes if container_id.startswith(prefix)]
        if len(found) > 1:
            raise AmbiguousPrefix(prefix)
        return found[0] if found else None

    # --- names ------------------------------------------------------------------
    async def reserve_name(self, name: str, owner: str) -> str | None:
        # A name reserved here alone could be given to another container by another proxy.
        return await self._needs_backend(lambda: self.inner.reserve_name(name, owner))

    async def assign_name(self, name: str, container_id: str, expected_owner: str) -> bool:
        self._names.keep(name, container_id)
        self._container_names.keep(container_id, name)
        return await self._or(
            lambda: self.inner.assign_name(name, container_id, expected_owner), lambda: True
        )

    async def retrieve_name(self, name: str) -> str | None:
        owner = await self._or(
            lambda: self.inner.retrieve_name(name), lambda: self._names.get(name)
        )
        if owner is not None:
            self._names.keep(name, owner)
        return owner

    async def release_name(self, name: str, owner: str) -> None:
        if self._names.get(name) == owner:
            del self._names[name]
        await self._or(lambda: self.inner.release_name(name, owner), lambda: None)

    # --- execs ------------------------------------------------------------------
    async def store_exec(self, exec_id: str, container_id: str) -> None:
        self._execs.keep(exec_id, container_id)
        await self._or(lambda: self.inner.store_exec(exec_id, container_id), lambda: None)

    async def retrieve_exec(self, exec_id: str) -> str | None:
        found = await self._or(
            lambda: self.inner.retrieve_exec(exec_id), lambda: self._execs.get(exec_id)
        )
        if found is not None:
            self._execs.keep(exec_id, found)
        return found

    async def remove_exec(self, exec_id: str) -> None:
        self._execs.pop(exec_id, None)
        await self._or(lambda: self.inner.remove_exec(exec_id), lambda: None)

    # --- images: learned again from the nodes -----------------------------------
    async def store_image(self, repository: str, image_id: str, node: str) -> None:
        await self._or(lambda: self.inner.store_image(repository, image_id, node), lambda: None)

    async def retrieve_image(self, repository: str) -> ImageRecord | None:
        return await self._or(lambda: self.inner.retrieve_image(repository), lambda: None)

    async def remove_image(self, repository: str, image_id: str, node: str) -> None:
        await self._or(lambda: self.inner.remove_image(repository, image_id, node), lambda: None)

    async def set_image_digest(self, repository: str, digest: str) -> None:
        await self._or(lambda: self.inner.set_image_digest(repository, digest), lambda: None)

    async def retrieve_images(self) -> list[ImageRecord]:
        return await self._needs_backend(lambda: self.inner.retrieve_images())

    # --- nodes: shared by the replicas, so only with the backend ----------------
    async def store_node(self, node: NodeRecord) -> None:
        await self._needs_backend(lambda: self.inner.store_node(node))

    async def retrieve_nodes(self) -> list[NodeRecord]:
        return await self._needs_backend(lambda: self.inner.retrieve_nodes())

    async def retrieve_nodes_by_metadata(self, metadata: dict[str, str]) -> list[NodeRecord]:
        return await self._needs_backend(lambda: self.inner.retrieve_nodes_by_metadata(metadata))

    async def retrieve_node(self, address: str) -> NodeRecord | None:
        return await self._needs_backend(lambda: self.inner.retrieve_node(address))

    async def update_node(self, node: NodeRecord) -> None:
        await self._needs_backend(lambda: self.inner.update_node(node))

    async def remove_node(self, address: str) -> None:
        await self._needs_backend(lambda: self.inner.remove_node(address))

    async def remove_nodes(self, addresses: list[str]) -> None:
        await self._needs_backend(lambda: self.inner.remove_nodes(addresses))

    async def lock_node_for_healing(self, address: str, is_failure: bool, timeout: float) -> bool:
        return await self._needs_backend(
            lambda: self.inner.lock_node_for_healing(address, is_failure, timeout)
        )

    async def extend_node_lock(self, address: str, timeout: float) -> None:
        await self._needs_backend(lambda: self.inner.extend_node_lock(address, timeout))

    async def unlock_node(self, address: str) -> None:
        await self._needs_backend(lambda: self.inner.unlock_node(address))

    # --- volumes: learned again from the nodes ----------------------------------
    async def store_volume(self, name: str, node: str) -> None:
        await self._or(lambda: self.inner.store_volume(name, node), lambda: None)

    async def retrieve_volume(self, name: str) -> set[str]:
        return await self._or(lambda: self.inner.retrieve_volume(name), set)

    async def remove_volume(self, name: str, node: str) -> None:
        await self._or(lambda: self.inner.remove_volume(name, node), lambda: None)

    async def retrieve_volumes(self) -> dict[str, set[str]]:
        return await self._needs_backend(lambda: self.inner.retrieve_volumes())

    # --- counters: a local turn keeps a rotation going --------------------------
    async def increment(self, key: str) -> int:
        def local() -> int:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

        value = await self._or(lambda: self.inner.increment(key), local)
        self._counters[key] = value
        return value

    async def counter(self, key: str) -> int:
        return await self._or(lambda: self.inner.counter(key), lambda: self._counters.get(key, 0))

    # --- container changes: while storage is out, each replica lists the nodes itself ---
    async def note_container_change(self, node: str, container_id: str) -> None:
        await self._or(lambda: self.inner.note_container_change(node, container_id), lambda: None)

    async def container_changes(self, since: dict[str, int]) -> dict[str, ChangeLog]:
        return await self._needs_backend(lambda: self.inner.container_changes(since))

    # --- rescheduling: decided with the shared store only -------------------------
    async def store_reschedulable(self, container_id: str, plan: str) -> None:
        await self._or(lambda: self.inner.store_reschedulable(container_id, plan), lambda: None)

    async def retrieve_reschedulables(self) -> dict[str, str]:
        return await self._needs_backend(lambda: self.inner.retrieve_reschedulables())

    async def remove_reschedulable(self, container_id: str) -> None:
        # A removed container's plan: dropped again by the next reconciliation if need be.
        await self._or(lambda: self.inner.remove_reschedulable(container_id), lambda: None)

    # --- lifecycle --------------------------------------------------------------
    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.inner.close()
