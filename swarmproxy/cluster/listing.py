"""Merging per-node container lists into the one list the daemon would give."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swarmproxy.cluster.node import Node
from swarmproxy.cluster.timestamps import parse_nanoseconds

# Asks a node for a container's creation time with nanoseconds (its inspect `Created`).
PreciseCreated = Callable[[Node, str], Awaitable[str]]


async def inspect_created(node: Node, container_id: str) -> str:
    """The exact `Created` of a container, or "" when the node cannot say."""
    return await node.client.inspect_field(container_id, "Created")


@dataclass
class _Entry:
    container: dict[str, Any]
    node: Node
    # Position in its node's list: the node sorts with full precision, newest first.
    rank: int
    # Nanoseconds since the epoch; only learnt where seconds cannot tell two nodes apart.
    precise: int | None = None

    @property
    def second(self) -> int:
        return int(self.container.get("Created", 0))

    def key(self) -> tuple[int, int]:
        ns = self.precise if self.precise is not None else self.second * 1_000_000_000
        return ns, -self.rank


def _fill_precise(tied: list[_Entry], known: dict[int, int]) -> None:
    """Give every tied entry a time. One its node could not time (removed meanwhile) is at
    least as new as the next older entry of the same node (a node lists newest first), and
    no older than the start of its own second."""
    by_node: dict[int, list[_Entry]] = {}
    for entry in tied:
        by_node.setdefault(id(entry.node), []).append(entry)
    for group in by_node.values():
        floor = 0
        for entry in sorted(group, key=lambda e: e.rank, reverse=True):
            floor = known.get(id(entry), max(floor, entry.second * 1_000_000_000))
            entry.precise = floor


async def merge_containers(
    per_node: Sequence[tuple[Node, list[dict[str, Any]]]],
    limit: int | None,
    precise_created: PreciseCreated = inspect_created,
) -> list[dict[str, Any]]:
    """Newest first, as the daemon sorts; each entry names its node (classic Swarm's `Node`).

    Each node already applied the filters and its own `limit`, so the newest `limit` of the
    union are the cluster's newest `limit`. The list's `Created` has whole seconds only: where
    the kept containers reach into a second shared by several nodes, that second's containers
    are timed exactly, so that the cut keeps the truly newest, in the daemon's order.
    """
    entries = [
        _Entry(container, node, rank)
        for node, containers in per_node
        for rank, container in enumerate(containers)
    ]
    entries.sort(key=_Entry.key, reverse=True)
    if limit is not None and limit > 0:
        # Whole seconds can't order containers of several nodes made in the same second:
        # where the kept ones reach into such a second, its containers are timed exactly.
        nodes_in: dict[int, set[int]] = {}
        for entry in entries:
            nodes_in.setdefault(entry.second, set()).add(id(entry.node))
        kept = {e.second for e in entries[:limit]}
        tied = [e for e in entries if e.second in kept and len(nodes_in[e.second]) > 1]
        if tied:
            times = await asyncio.gather(
                *(precise_created(e.node, e.container["Id"]) for e in tied)
            )
            known = {
                id(e): parse_nanoseconds(created)
                for e, created in zip(tied, times, strict=True)
                if created
            }
            _fill_precise(tied, known)
            entries.sort(key=_Entry.key, reverse=True)
        del entries[limit:]
    for entry in entries:
        entry.container["Node"] = entry.node.describe()
    return [e.container for e in entries]
