from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from swarmproxy.scheduler.base import Scheduler, SchedulingRequest

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node


class Random(Scheduler):
    """Any candidate, uniformly."""

    name = "random"

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        # Placement, not cryptography.
        return random.choice(list(nodes))
