"""Placement filters: classic Swarm's, each judging the candidate nodes of a new container.

`FILTERS` names the default ones in the order they run; `make_filters` makes them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmproxy.scheduler.filters.affinity import AffinityFilter
from swarmproxy.scheduler.filters.base import Filter, PlacementContext
from swarmproxy.scheduler.filters.constraint import ConstraintFilter
from swarmproxy.scheduler.filters.dependency import DependencyFilter
from swarmproxy.scheduler.filters.health import HealthFilter
from swarmproxy.scheduler.filters.port import PortFilter

_CLASSES: dict[str, type[Filter]] = {
    cls.name: cls
    for cls in (HealthFilter, ConstraintFilter, AffinityFilter, PortFilter, DependencyFilter)
}

# Health first: the others need not judge (nor ask about) a node that cannot take anything.
FILTERS: tuple[str, ...] = tuple(_CLASSES)


def make_filters(names: Sequence[str]) -> list[Filter]:
    """New filters by name, in the order given; a ValueError for an unknown name."""
    unknown = [name for name in names if name not in _CLASSES]
    if unknown:
        known = ", ".join(FILTERS)
        raise ValueError(f"unknown filter {', '.join(map(repr, unknown))} (known: {known})")
    return [_CLASSES[name]() for name in names]


__all__ = [
    "FILTERS",
    "AffinityFilter",
    "ConstraintFilter",
    "DependencyFilter",
    "Filter",
    "HealthFilter",
    "PlacementContext",
    "PortFilter",
    "make_filters",
]
