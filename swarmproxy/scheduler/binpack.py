from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmproxy.scheduler.base import SchedulingRequest
from swarmproxy.scheduler.weighing import Weighing, weights

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node


class Binpack(Weighing):
    """The most loaded node that still has room: fills one node before the next, leaving
    whole nodes free for big containers."""

    name = "binpack"

    async def scores(self, nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, float]:
        return {node: weight.fullness for node, weight in weights(nodes, request).items()}
