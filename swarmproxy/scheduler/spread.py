from __future__ import annotations

from swarmproxy.scheduler.weighing import Weighing, Weight


class Spread(Weighing):
    """The least loaded node: fewest active containers, then most CPU and memory left
    unreserved. Keeps nodes within one container of each other."""

    name = "spread"

    def rate(self, weight: Weight) -> float:
        return -weight.fullness
