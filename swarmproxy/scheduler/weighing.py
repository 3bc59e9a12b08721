"""How full a node is, for the strategies that weigh nodes (spread, binpack): its active
containers, and the share of its CPUs and memory reserved once the new container's
reservation is added. A node without room for that reservation is not a candidate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from swarmproxy.errors import NoNodeAvailable
from swarmproxy.scheduler.base import Scheduler, SchedulingRequest
from swarmproxy.scheduler.load import Reservation, reservation_of

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node


class Weight(NamedTuple):
    # A tuple rather than a frozen dataclass: one is made per node and placement, and a
    # frozen dataclass's construction costs several times more.
    active: int
    # Reserved shares of CPUs and memory, 0 to 1 each, with the new container's counted.
    cpu: float
    memory: float

    @property
    def fits(self) -> bool:
        return self.cpu <= 1.0 and self.memory <= 1.0

    @property
    def fullness(self) -> float:
        """Active containers, then reserved shares: half a container at most, so that the
        count decides and the reservations break its ties."""
        return self.active + (self.cpu + self.memory) / 4


def weigh(node: Node, wanted: Reservation) -> Weight:
    load = node.load
    cpus = float(node.info.get("NCPU") or 0)
    memory = float(node.info.get("MemTotal") or 0)
    # A node that has not said what it has is judged on its containers alone.
    cpu = (load.reserved_cpus + wanted.cpus) / cpus if cpus else 0.0
    mem = (load.reserved_memory + wanted.memory) / memory if memory else 0.0
    return Weight(load.active, cpu, mem)


def weights(nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, Weight]:
    """The nodes with room for the container, weighed."""
    wanted = reservation_of(request.config)
    weighed = {node: weigh(node, wanted) for node in nodes}
    return {node: weight for node, weight in weighed.items() if weight.fits}


class Weighing(Scheduler):
    """A strategy that scores the nodes with room and picks the best; ties go to the first
    in address order, so placement is stable."""

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        scored = await self.scores(nodes, request)
        if not scored:
            wanted = reservation_of(request.config)
            raise NoNodeAvailable(
                f"no node has room for {wanted.cpus:g} CPUs and {wanted.memory} bytes of "
                f"memory reserved (tried {', '.join(n.name for n in nodes)})"
            )
        return min(scored, key=lambda n: (-scored[n], n.address))
