"""The scheduler interface (the seed's): given the candidate nodes and what is asked, pick
one. A strategy may also rate every candidate, for the placement dry-run to explain."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # The cluster core imports the scheduler: only the types may come back this way.
    from swarmproxy.cluster.node import Node
    from swarmproxy.storage import Storage


@dataclass
class SchedulingRequest:
    """What is known of the container to place."""

    name: str = ""
    # The create's body, as it goes to the node: placement expressions given as `-e
    # constraint:…` / `-e affinity:…` are taken out of its Env and kept in its Labels.
    config: dict[str, Any] = field(default_factory=dict)
    # Free-form, from the library's caller to the strategy (the seed's scheduler options).
    options: Any = None
    # Classic Swarm's expressions as written: `zone==b`, `node!=node-1`, `container==~web`.
    constraints: list[str] = field(default_factory=list)
    affinities: list[str] = field(default_factory=list)


class Scheduler(abc.ABC):
    """A strategy. Built with the cluster's storage, for what its replicas must share."""

    name: str = ""

    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage

    @abc.abstractmethod
    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        """Pick one of `nodes` (never empty); the choice counts (a rotation moves on)."""

    async def scores(self, nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, float]:
        """How the strategy rates each node, higher first, without choosing: what the
        placement dry-run shows. A strategy that cannot say rates them all alike."""
        return dict.fromkeys(nodes, 0.0)

    async def for_dry_mode(self, storage: Storage) -> Scheduler:
        """A copy that goes on from this one's state over dry mode's storage."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.storage = storage
        return copy
