"""The `constraint` filter: the request's constraints, on node labels and built-in keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmproxy.scheduler.expressions import constraint_failure, parse_expressions, sift
from swarmproxy.scheduler.filters.base import Filter, PlacementContext

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.scheduler.base import SchedulingRequest


class ConstraintFilter(Filter):
    """`zone==b`, `node!=node-1`, `storagedriver==overlay*`, `kernelversion==/^6\\./`, …"""

    name = "constraint"

    async def judge(
        self, nodes: Sequence[Node], request: SchedulingRequest, context: PlacementContext
    ) -> dict[Node, str]:
        if not request.constraints:
            # `sift` would still visit every node.
            return {}
        expressions = parse_expressions(request.constraints, "constraint")
        return sift(nodes, expressions, constraint_failure)
