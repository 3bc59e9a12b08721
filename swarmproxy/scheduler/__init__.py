"""Placement of new containers: strategies (and, later, filters)."""

from __future__ import annotations

from collections.abc import Callable

from swarmproxy.scheduler.base import Scheduler, SchedulingRequest
from swarmproxy.scheduler.round_robin import RoundRobin

STRATEGIES: dict[str, Callable[[], Scheduler]] = {RoundRobin.name: RoundRobin}


def make_scheduler(strategy: str) -> Scheduler:
    try:
        return STRATEGIES[strategy]()
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {strategy!r} (known: {known})") from None


__all__ = ["STRATEGIES", "Scheduler", "SchedulingRequest", "make_scheduler"]
