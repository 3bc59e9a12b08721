"""The scheduler interface: given the candidate nodes and what is asked, pick one."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # The cluster core imports the scheduler: only the type may come back this way.
    from swarmproxy.cluster.node import Node


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
    name: str = ""

    @abc.abstractmethod
    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        """Pick one of `nodes` (never empty)."""
