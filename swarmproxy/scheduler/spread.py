from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmproxy.scheduler.base import SchedulingRequest
from swarmproxy.scheduler.weighing import Weighing, weights

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node


class Spread(Weighing):
    """The least loaded node: fewest active containers, then most CPU and memory left
    unreserved. Keeps nodes within one container of each other."""

    name = "spread"

    async def scores(self, nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, float]:
        return {node: -weight.fullness for node, weight in weights(nodes, request).items()}
