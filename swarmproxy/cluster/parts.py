"""What Cluster's mixins use of one another and of Cluster itself, declared once.

Every mixin inherits ClusterParts, so it comes last in Cluster's method order: the
implementation, in Cluster or in another mixin, always stands before the abstract
declaration, and Cluster stays concrete. A declaration in a mixin itself would hide an
implementation that comes later in that order.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from swarmproxy.cluster.broadcast import Broadcast
    from swarmproxy.cluster.container_lists import KeptQuery
    from swarmproxy.cluster.core import NameClaim
    from swarmproxy.cluster.creation import CreatedContainer
    from swarmproxy.cluster.healing import NodeHealing
    from swarmproxy.cluster.hooks import Hooks
    from swarmproxy.cluster.images import Params
    from swarmproxy.cluster.node import Node
    from swarmproxy.config import HealthConfig, ImagesConfig
    from swarmproxy.node_client import NodeClient
    from swarmproxy.scheduler import Scheduler, SchedulingRequest
    from swarmproxy.scheduler.filters.base import Filter
    from swarmproxy.storage import ContainerRecord, Storage

T = TypeVar("T")


class ClusterParts(abc.ABC):
    """The surface of Cluster that its mixins share."""

    # --- Cluster's state --------------------------------------------------------------
    nodes: list[Node]
    # The same nodes by address.
    _by_address: dict[str, Node]
    storage: Storage
    scheduler: Scheduler
    filters: list[Filter]
    hooks: Hooks
    healing: NodeHealing
    health_config: HealthConfig
    images_config: ImagesConfig
    max_attempts: int
    # In dry mode no daemon is called.
    dry: bool
    # What new nodes speak to their daemon with (dry mode's speaks to none).
    client_class: type[NodeClient]

    # --- Cluster's: the nodes and calls to them ---------------------------------------
    @abc.abstractmethod
    def ready_nodes(self) -> list[Node]: ...

    @abc.abstractmethod
    def callable_nodes(self) -> list[Node]: ...

    @abc.abstractmethod
    async def fan_out(
        self,
        call: Callable[[Node], Awaitable[T]],
        nodes: Sequence[Node] | None = None,
        timeout: float | None = ...,
    ) -> list[tuple[Node, T | BaseException]]: ...

    @abc.abstractmethod
    async def fan_out_json(
        self, method: str, path: str, timeout: float | None = ...
    ) -> list[tuple[Node, Any]]: ...

    @abc.abstractmethod
    def _in_background(self, work: Coroutine[Any, Any, None]) -> None: ...

    @abc.abstractmethod
    def _add_node(self, node: Node) -> None:
        """Start serving a node: health, monitoring, watching."""

    @abc.abstractmethod
    async def _drop_node(self, address: str) -> None:
        """Stop serving a node."""

    @abc.abstractmethod
    async def check_node(self, node: Node) -> None:
        """Ping a node, so that its status is known."""

    # --- Cluster's: the container index -----------------------------------------------
    @abc.abstractmethod
    async def locate_container(self, ref: str) -> tuple[ContainerRecord, Node]: ...

    @abc.abstractmethod
    async def route_container(self, ref: str) -> tuple[str, Node]: ...

    @abc.abstractmethod
    async def locate_exec(self, exec_id: str) -> tuple[str, Node]: ...

    @abc.abstractmethod
    async def adopt_container(self, container_id: str, node: Node, name: str) -> None: ...

    # --- ContainerCreation's and ContainerOperations' ---------------------------------
    @abc.abstractmethod
    async def create_container(
        self, config: Mapping[str, Any] | bytes, name: str = ""
    ) -> CreatedContainer: ...

    @abc.abstractmethod
    async def start_container(self, ref: str) -> None: ...

    @abc.abstractmethod
    async def remember_plan(
        self, container_id: str, node: Node, name: str, config: dict[str, Any]
    ) -> None: ...

    @abc.abstractmethod
    async def index_name(self, container_id: str, node: Node, name: str) -> None: ...

    @abc.abstractmethod
    async def exec_created(self, exec_id: str, container_id: str) -> None: ...

    @abc.abstractmethod
    async def forget_container(self, container_id: str) -> None: ...

    # --- ContainerLists' --------------------------------------------------------------
    @abc.abstractmethod
    def changing(self, node: Node, container_id: str) -> AbstractAsyncContextManager[None]: ...

    @abc.abstractmethod
    async def note_change(self, node: Node, container_id: str) -> None: ...

    @abc.abstractmethod
    async def list_kept(self, query: KeptQuery, path: str, api_version: str = "") -> bytes: ...

    @abc.abstractmethod
    async def claim_name(self, name: str) -> NameClaim: ...

    @abc.abstractmethod
    async def release_claim(self, claim: NameClaim | None) -> None: ...

    @abc.abstractmethod
    async def container_created(
        self, container_id: str, node: Node, claim: NameClaim | None
    ) -> None: ...

    # --- NodeRegistry's ---------------------------------------------------------------
    @abc.abstractmethod
    def find_node(self, ref: str) -> Node: ...

    # --- Placing's --------------------------------------------------------------------
    @abc.abstractmethod
    async def schedule(
        self, request: SchedulingRequest, nodes: Sequence[str] = (), exclude: Sequence[Node] = ()
    ) -> Node: ...

    # --- ImageOperations' -------------------------------------------------------------
    @abc.abstractmethod
    async def image_holders(self, ref: str) -> list[Node]: ...

    @abc.abstractmethod
    async def nodes_holding_all(
        self, refs: Sequence[str], candidates: Sequence[Node]
    ) -> list[Node]: ...

    @abc.abstractmethod
    async def image_missing_on(self, node: Node, ref: str) -> None: ...

    @abc.abstractmethod
    async def forget_image_on(self, node: Node, ref: str) -> None: ...

    @abc.abstractmethod
    async def learn_images(self, node: Node) -> int: ...

    @abc.abstractmethod
    async def provide_image(
        self,
        node: Node,
        ref: str,
        *,
        auth: str | None = None,
        inactivity: float | None = None,
        api_version: str = "",
    ) -> None: ...

    @abc.abstractmethod
    def pull_image(
        self,
        image: str,
        tag: str = "",
        *,
        auth: str | None = None,
        nodes: Sequence[Node] | None = None,
        params: Params = (),
        api_version: str = "",
        inactivity: float | None = None,
    ) -> Broadcast: ...

    # --- VolumeOperations' ------------------------------------------------------------
    @abc.abstractmethod
    async def volume_nodes(self, name: str) -> list[Node]: ...
