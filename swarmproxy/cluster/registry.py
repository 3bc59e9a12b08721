"""The node registry: which nodes make up the cluster, kept in storage so every proxy
replica on one Redis serves the same ones. The seed's node calls, for the library and the
admin API alike.

A node registered or unregistered on one replica reaches the others at their next round of
monitoring, when each one brings its set of nodes in step with the records.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

from swarmproxy.cluster.node import CREATED, CREATION_STATUSES, DISABLED, Node
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import BadRequest, Conflict, NotFound
from swarmproxy.log import log_event
from swarmproxy.node_client import NodeClient
from swarmproxy.storage import NodeRecord
from swarmproxy.tls import NodeTLS, TLSError, node_tls_from_pems

log = logging.getLogger("swarmproxy.cluster")


class NodeRegistry(ClusterParts):
    """Mixed into Cluster, which provides the node set and its bookkeeping."""

    def find_node(self, ref: str) -> Node:
        """A node by its address or its name."""
        by_address = self._by_address.get(ref)
        if by_address is not None:
            return by_address
        for node in self.nodes:
            if ref == node.name:
                return node
        raise NotFound(f"no node {ref!r} in the cluster")

    # --- the seed's calls -----------------------------------------------------------
    async def register(
        self,
        address: str,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        tls: NodeTLS | None = None,
        creation_status: str = CREATED,
    ) -> Node:
        """Add a node to the cluster (and to every replica's, through storage); the
        `before_node_register` hooks may change its record first, or refuse it. A node
        registered `pending` (a provisioner still making it) takes no containers until its
        creation status is set to `created`."""
        check_creation_status(creation_status)
        if any(n.address == address or (name and n.name == name) for n in self.nodes):
            raise Conflict(f"node {name or address} is already registered")
        record = NodeRecord(
            address=address,
            name=name or address,
            metadata=dict(labels or {}),
            tls=tls.pems() if tls is not None else {},
            creation_status=creation_status,
        )
        await self.hooks.run("before_node_register", record)
        try:
            node = node_of(record, self.client_class)
        except TLSError as e:
            raise BadRequest(f"node {address}: {e}") from None
        try:
            await self.storage.store_node(record)
        except ValueError:
            raise Conflict(f"node {address} is already registered") from None
        self._add_node(node)
        await self.check_node(node)
        log_event(log, logging.INFO, "node registered", node=node.name, addr=address)
        return node

    async def unregister(self, ref: str) -> None:
        await self.unregister_nodes([ref])

    async def unregister_nodes(self, refs: Sequence[str]) -> None:
        """Remove nodes (by address or name) from the cluster: all of them, or none when one
        is unknown or a `before_node_unregister` hook refuses one."""
        nodes = [self.find_node(ref) for ref in refs]
        for node in nodes:
            await self.hooks.run("before_node_unregister", await self.get_node(node.address))
        await self.storage.remove_nodes([n.address for n in nodes])
        for node in nodes:
            await self._drop_node(node.address)
            log_event(log, logging.INFO, "node unregistered", node=node.name, addr=node.address)

    async def get_node(self, ref: str) -> NodeRecord:
        node = self.find_node(ref)
        record = await self.storage.retrieve_node(node.address)
        if record is None:
            raise NotFound(f"no node {ref!r} in the cluster")
        return record

    async def update_node(self, record: NodeRecord) -> None:
        try:
            await self.storage.update_node(record)
        except KeyError:
            raise NotFound(f"no node {record.address!r} in the cluster") from None
        self._take_record(record)

    async def atomic_update_node(
        self, ref: str, change: Callable[[NodeRecord], None]
    ) -> NodeRecord:
        """Read, change and write a node's record under its healing lock, so that no other
        replica's change (or health decision) is lost in between (the seed's
        AtomicUpdateNode)."""
        node = self.find_node(ref)
        async with self.healing.held(node.address):
            record = await self.get_node(node.address)
            change(record)
            await self.storage.update_node(record)
        record.healing.locked_until = 0.0
        self._take_record(record)
        return record

    async def set_creation_status(self, ref: str, status: str) -> NodeRecord:
        check_creation_status(status)

        def change(record: NodeRecord) -> None:
            record.creation_status = status

        return await self.atomic_update_node(ref, change)

    async def drain(self, ref: str) -> NodeRecord:
        """No new containers on the node; its containers go on being served."""
        return await self.set_creation_status(ref, DISABLED)

    async def enable(self, ref: str) -> NodeRecord:
        return await self.set_creation_status(ref, CREATED)

    async def list_nodes(self) -> list[NodeRecord]:
        """The nodes that take containers (the seed's Nodes): drained ones left out."""
        return [r for r in await self.unfiltered_nodes() if r.creation_status != DISABLED]

    async def unfiltered_nodes(self) -> list[NodeRecord]:
        return await self.storage.retrieve_nodes()

    async def nodes_for_metadata(self, metadata: Mapping[str, str]) -> list[NodeRecord]:
        records = await self.unfiltered_nodes_for_metadata(metadata)
        return [r for r in records if r.creation_status != DISABLED]

    async def unfiltered_nodes_for_metadata(self, metadata: Mapping[str, str]) -> list[NodeRecord]:
        return await self.storage.retrieve_nodes_by_metadata(dict(metadata))

    # --- keeping in step ------------------------------------------------------------
    async def sync_nodes(self, records: Sequence[NodeRecord]) -> None:
        """Serve exactly the registered nodes: those another replica added, and not those
        another replica removed."""
        registered = {r.address: r for r in records}
        known = {n.address for n in self.nodes}
        for record in records:
            if record.address not in known:
                try:
                    node = node_of(record, self.client_class)
                except TLSError as e:
                    log_event(
                        log, logging.ERROR, "node unusable", addr=record.address, error=str(e)
                    )
                    continue
                self._add_node(node)
                log_event(log, logging.INFO, "node joined", node=record.name, addr=record.address)
        for node in [n for n in self.nodes if n.address not in registered]:
            await self._drop_node(node.address)
            log_event(log, logging.INFO, "node left", node=node.name, addr=node.address)

    def _take_record(self, record: NodeRecord) -> None:
        with contextlib.suppress(NotFound):
            node = self.find_node(record.address)
            node.labels = dict(record.metadata)
            node.creation_status = record.creation_status
            node.generation += 1


def record_of(node: Node) -> NodeRecord:
    """A served node's record as this process knows it (TLS as PEM text), health aside."""
    return NodeRecord(
        address=node.address,
        name=node.name,
        metadata=dict(node.labels),
        creation_status=node.creation_status,
        tls=node.tls.pems() if node.tls is not None else {},
    )


def node_of(record: NodeRecord, client_class: type[NodeClient] = NodeClient) -> Node:
    """The node a record describes, TLS included."""
    node = Node(
        record.name,
        record.address,
        dict(record.metadata),
        tls=node_tls_from_pems(record.tls),
        client_class=client_class,
    )
    node.creation_status = record.creation_status
    return node


def check_creation_status(status: str) -> None:
    if status not in CREATION_STATUSES:
        raise BadRequest(
            f"invalid creation status {status!r}: expected one of {', '.join(CREATION_STATUSES)}"
        )
