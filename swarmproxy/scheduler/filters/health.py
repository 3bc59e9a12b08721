"""The `health` filter: only nodes that may take new containers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmproxy.cluster.node import DISABLED
from swarmproxy.scheduler.filters.base import Filter, PlacementContext

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.scheduler.base import SchedulingRequest


class HealthFilter(Filter):
    """Excludes the nodes that are not ready: unhealthy, drained, or still in the making."""

    name = "health"

    async def judge(
        self, nodes: Sequence[Node], request: SchedulingRequest, context: PlacementContext
    ) -> dict[Node, str]:
        return {node: _why_not_ready(node) for node in nodes if not node.ready}


def _why_not_ready(node: Node) -> str:
    if not node.health.ready:
        return node.health.describe()
    return "drained" if node.creation_status == DISABLED else node.creation_status
