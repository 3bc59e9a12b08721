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
    config: dict[str, Any] = field(default_factory=dict)
    # Free-form, from the library's caller to the strategy (the seed's scheduler options).
    options: Any = None


class Scheduler(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        """Pick one of `nodes` (never empty)."""
