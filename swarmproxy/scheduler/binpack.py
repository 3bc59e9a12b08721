from __future__ import annotations

from swarmproxy.scheduler.weighing import Weighing, Weight


class Binpack(Weighing):
    """The most loaded node that still has room: fills one node before the next, leaving
    whole nodes free for big containers."""

    name = "binpack"

    def rate(self, weight: Weight) -> float:
        return weight.fullness
