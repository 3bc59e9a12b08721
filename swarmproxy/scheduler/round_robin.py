from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmproxy.scheduler.base import Scheduler, SchedulingRequest

if TYPE_CHECKING:
    # The cluster core imports the scheduler: only the type may come back this way.
    from swarmproxy.cluster.node import Node


class RoundRobin(Scheduler):
    """Each new container goes to the next node in address order.

    The counter is this process's own: replicas on one storage rotate independently.
    """

    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        ordered = sorted(nodes, key=lambda n: n.address)
        node = ordered[self._next % len(ordered)]
        self._next += 1
        return node
