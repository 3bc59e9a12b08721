"""Decisions about a node's health, shared by every proxy replica through storage.

A failure or a recovery seen by any replica is written to the node's record under the
storage's healing lock (the seed's LockNodeForHealing / ExtendNodeLock / UnlockNode), so two
replicas never decide about one node at once; the replica that finds the lock taken leaves
the decision to the one holding it. Every replica reads the records back on each round of
monitoring, so all of them show and act on the same status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from swarmproxy.cluster.healer import Healer
from swarmproxy.cluster.node import Node
from swarmproxy.log import log_event
from swarmproxy.storage import NodeRecord, Storage, StorageError

log = logging.getLogger("swarmproxy.health")

# How long a healing lock lives unless extended: a replica that dies holding it must not
# keep the node locked for long. It is extended while held.
LOCK_SECONDS = 15.0


class NodeHealing:
    def __init__(self, storage: Storage, healer: Healer) -> None:
        self.storage = storage
        self.healer = healer
        # Per node, whether a decision is under way here: concurrent failures seen by many
        # requests make one decision, not one each.
        self._busy: set[str] = set()

    @contextlib.asynccontextmanager
    async def _locked(self, address: str, is_failure: bool) -> AsyncIterator[bool]:
        """Hold the node's healing lock, extended while held; yields False when another
        replica holds it."""
        if not await self.storage.lock_node_for_healing(address, is_failure, LOCK_SECONDS):
            yield False
            return

        async def extend() -> None:
            while True:
                await asyncio.sleep(LOCK_SECONDS / 3)
                await self.storage.extend_node_lock(address, LOCK_SECONDS)

        extender = asyncio.create_task(extend())
        try:
            yield True
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError, StorageError):
                await extender
            await self.storage.unlock_node(address)

    def deciding(self, address: str) -> bool:
        """Whether a decision about the node is under way here (its record may show the
        lock this process holds; the decision applies the outcome itself)."""
        return address in self._busy

    @contextlib.asynccontextmanager
    async def held(self, address: str, timeout: float = LOCK_SECONDS) -> AsyncIterator[None]:
        """The node's healing lock, waited for (a health decision holds it for moments):
        for a change to the node's record that must not race one."""
        deadline = time.monotonic() + timeout
        while True:
            async with self._locked(address, is_failure=False) as got:
                if got:
                    yield
                    return
            if time.monotonic() > deadline:
                raise StorageError(f"node {address} stayed locked for {timeout:g}s")
            await asyncio.sleep(0.05)

    async def decide(self, node: Node, ok: bool, error: str = "") -> None:
        """Record a failure (and let the healer disable the node) or a recovery."""
        if node.address in self._busy:
            return
        self._busy.add(node.address)
        try:
            record = await self._update(node, ok, error)
        except (StorageError, KeyError) as e:
            # The node keeps the health seen here; the next round tries again.
            log_event(log, logging.WARNING, "health not shared", node=node.name, error=str(e))
            return
        finally:
            self._busy.discard(node.address)
        if record is not None:
            apply(node, record)

    async def _update(self, node: Node, ok: bool, error: str) -> NodeRecord | None:
        async with self._locked(node.address, is_failure=not ok) as held:
            if not held:
                return None
            record = await self.storage.retrieve_node(node.address)
            if record is None:
                return None
            now = time.time()
            if ok:
                record.failures, record.disabled_until = 0, 0.0
                record.last_success_at = now
            else:
                record.failures += 1
                record.last_error, record.last_error_at = error, now
                seconds = self.healer.handle_error(record)
                record.disabled_until = now + seconds if seconds > 0 else 0.0
            await self.storage.update_node(record)
        record.healing.locked_until = 0.0
        _log_decision(node, record, ok)
        return record


def apply(node: Node, record: NodeRecord) -> None:
    """Take the shared record's view of the node's health."""
    health = node.health
    health.failures = record.failures
    health.last_error = record.last_error
    health.last_error_at = record.last_error_at
    health.disabled_until = record.disabled_until
    health.healing_until = record.healing.locked_until
    # A success seen here may be newer than the record's: successes are not all written.
    health.last_success_at = max(health.last_success_at, record.last_success_at)


def _log_decision(node: Node, record: NodeRecord, ok: bool) -> None:
    if ok:
        log_event(log, logging.INFO, "node ready", node=node.name, addr=node.address)
    elif record.disabled_until:
        seconds = record.disabled_until - time.time()
        log_event(
            log,
            logging.WARNING,
            "node disabled",
            node=node.name,
            addr=node.address,
            failures=record.failures,
            seconds=f"{seconds:.0f}",
            error=record.last_error,
        )
