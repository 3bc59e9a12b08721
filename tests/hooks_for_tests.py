"""User code that the tests name in a proxy's config (hooks, a strategy), as a user's module
would be."""

from __future__ import annotations

from collections.abc import Sequence

from swarmproxy.cluster import Node
from swarmproxy.scheduler import Scheduler, SchedulingRequest
from swarmproxy.storage import NodeRecord


def avoid_node_1(node: Node, request: SchedulingRequest) -> None:
    if node.name == "node-1":
        raise RuntimeError("node-1 is kept for other work")


def keep_pinned(record: NodeRecord) -> None:
    if record.metadata.get("pinned") == "yes":
        raise RuntimeError(f"{record.name} is pinned")


async def mark_registered(record: NodeRecord) -> None:
    record.metadata["registered-by"] = "hook"


def refuse_node_2(record: NodeRecord) -> None:
    if record.name == "node-2":
        raise RuntimeError("node-2 is not for this cluster")


class FirstNode(Scheduler):
    """A custom strategy, named by import path: the first candidate in name order."""

    name = "first"

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        return min(nodes, key=lambda n: n.name)
