"""Placement of new containers: strategies (and the filters in `scheduler.filters`)."""

from __future__ import annotations

from swarmproxy import imports
from swarmproxy.scheduler.base import Scheduler, SchedulingRequest
from swarmproxy.scheduler.binpack import Binpack
from swarmproxy.scheduler.random_choice import Random
from swarmproxy.scheduler.round_robin import RoundRobin
from swarmproxy.scheduler.spread import Spread
from swarmproxy.storage import Storage

STRATEGIES: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (RoundRobin, Spread, Binpack, Random)
}


def make_scheduler(strategy: str, storage: Storage | None = None) -> Scheduler:
    """A built-in strategy by name, or a custom one by import path: `"pkg.module:Class"`,
    a Scheduler subclass built with the cluster's storage."""
    if ":" in strategy:
        return _custom(strategy)(storage)
    try:
        return STRATEGIES[strategy](storage)
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(
            f"unknown strategy {strategy!r} (known: {known}, or package.module:Class)"
        ) from None


def _custom(spec: str) -> type[Scheduler]:
    found = imports.load(spec, "strategy", "package.module:Class")
    if not isinstance(found, type) or not issubclass(found, Scheduler):
        raise ValueError(f"strategy {spec!r} is not a swarmproxy.scheduler.Scheduler subclass")
    return found


__all__ = ["STRATEGIES", "Scheduler", "SchedulingRequest", "make_scheduler"]
