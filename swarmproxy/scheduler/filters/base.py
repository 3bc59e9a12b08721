"""The filter interface: what a filter is given, and what it answers.

A filter judges the candidate nodes for one container and names the ones it excludes, each
with the reason; the cluster runs the filters in order, each on the nodes the ones before
it left, then lets the strategy pick among what remains. When no node is left, the answer
says which filter excluded which nodes, and why.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.scheduler.base import SchedulingRequest


class PlacementContext(Protocol):
    """What a filter may ask of the cluster; the cluster core provides it."""

    async def container_node(self, ref: str) -> Node | None:
        """The node of a container, by full ID, unique ID prefix or name; None if no node
        has it."""
        ...

    async def containers_on(self, node: Node) -> list[dict[str, Any]]:
        """The node's containers as `GET /containers/json?all=1` lists them (`Id`, `Names`,
        `Image`, `Labels`, `State`, `Ports`, …); [] when the node cannot say."""
        ...

    async def image_nodes(self, ref: str) -> list[Node]:
        """The nodes that hold an image (by reference or ID)."""
        ...

    async def volume_nodes(self, name: str) -> list[Node]:
        """The nodes that hold a named volume."""
        ...


class Filter(abc.ABC):
    """One rule of placement. `name` is how errors and explanations call it."""

    name: str = ""

    @abc.abstractmethod
    async def judge(
        self, nodes: Sequence[Node], request: SchedulingRequest, context: PlacementContext
    ) -> dict[Node, str]:
        """The nodes of `nodes` this filter excludes, each with why (`zone==b: zone is a`).
        Soft rules (`~`) exclude nothing when they would exclude every node. A request
        whose rules contradict each other raises a DockerError (400 or 409)."""
