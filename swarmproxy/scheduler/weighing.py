"""How full a node is, for the strategies that weigh nodes (spread, binpack): its active
containers, and the share of its CPUs and memory reserved once the new container's
reservation is added. A node without room for that reservation is not a candidate."""

from __future__ import annotations

import abc
import bisect
import itertools
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from swarmproxy.errors import NoNodeAvailable
from swarmproxy.scheduler.base import Scheduler, SchedulingRequest
from swarmproxy.scheduler.load import Reservation, reservation_of

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.storage import Storage

# What most containers reserve: no `--cpus`, no `--memory`.
NOTHING = Reservation()


class Weight(NamedTuple):
    # A tuple rather than a frozen dataclass: one is made per node and placement, and a
    # frozen dataclass's construction costs several times more.
    active: int
    # Reserved shares of CPUs and memory, 0 to 1 each, with the new container's counted.
    cpu: float
    memory: float

    @property
    def fits(self) -> bool:
        return self.cpu <= 1.0 and self.memory <= 1.0

    @property
    def fullness(self) -> float:
        """Active containers, then reserved shares: half a container at most, so that the
        count decides and the reservations break its ties."""
        return self.active + (self.cpu + self.memory) / 4


def weigh(node: Node, wanted: Reservation) -> Weight:
    load = node.load
    cpus = float(node.info.get("NCPU") or 0)
    memory = float(node.info.get("MemTotal") or 0)
    # A node that has not said what it has is judged on its containers alone.
    cpu = (load.reserved_cpus + wanted.cpus) / cpus if cpus else 0.0
    mem = (load.reserved_memory + wanted.memory) / memory if memory else 0.0
    return Weight(load.active, cpu, mem)


def weights(nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, Weight]:
    """The nodes with room for the container, weighed."""
    wanted = reservation_of(request.config)
    weighed = {node: weigh(node, wanted) for node in nodes}
    return {node: weight for node, weight in weighed.items() if weight.fits}


# A node's place in a Ranking: the general choice's key (-score, address), then a number of
# the ranking's own, unique to the node, so that two entries never compare their nodes.
_Entry = tuple[float, str, int]


class Ranking:
    """The nodes a strategy has been offered, best first as it rates them for a container
    that reserves nothing, kept in order as their loads change.

    Weighing every candidate costs microseconds per node and decision; here a decision
    re-weighs only the nodes whose load changed since the last one (their loads say so)
    and those that reserve something and whose capacity (`info`) was read again, then
    walks from the best until it meets a candidate. Beside the last candidates, the nodes
    are held weakly: one that leaves the cluster leaves the ranking once it is collected."""

    def __init__(self, rate: Callable[[Weight], float]) -> None:
        self._rate = rate
        self._order: list[_Entry] = []
        # Each ranked node's entry in the order, or None while it has no room.
        self._entries: dict[int, _Entry | None] = {}
        self._nodes: dict[int, weakref.ref[Node]] = {}
        # The live nodes' numbers by id(node): whether every candidate is ranked already
        # is then answered without a call per node.
        self._numbers: dict[int, int] = {}
        self._next = itertools.count()
        self._changed: set[int] = set()
        # The `info` a node was weighed with, for the nodes whose weight depends on it.
        self._capacities: dict[int, dict[str, Any]] = {}
        # Nodes collected since the last decision; the order is only changed by one.
        self._collected: list[int] = []
        # The last candidates, as given and as a set: most often the same nodes from one
        # decision to the next, and comparing them costs less than looking each one up.
        self._given: tuple[Node, ...] = ()
        self._candidates: set[Node] = set()

    def best(self, nodes: Sequence[Node]) -> Node | None:
        """The best of `nodes` that has room, or None."""
        given = tuple(nodes)
        if given != self._given:
            if not all(map(self._numbers.__contains__, map(id, given))):
                for node in given:
                    if id(node) not in self._numbers:
                        self._add(node)
            self._given, self._candidates = given, set(given)
        self._catch_up()
        for _, _, number in self._order:
            ranked = self._nodes[number]()
            if ranked in self._candidates:
                return ranked
        return None

    def _add(self, node: Node) -> None:
        number, node_id = next(self._next), id(node)

        def collected(_: weakref.ref[Node]) -> None:
            # Called from the garbage collector, maybe in the middle of a decision: the
            # id is free again at once, the order is mended by the next decision.
            self._numbers.pop(node_id, None)
            self._collected.append(number)

        self._nodes[number] = weakref.ref(node, collected)
        self._numbers[node_id] = number
        self._entries[number] = None
        node.load.watch(partial(self._changed.add, number))
        self._changed.add(number)

    def _catch_up(self) -> None:
        while self._collected:
            number = self._collected.pop()
            self._unplace(number)
            del self._entries[number], self._nodes[number]
            self._capacities.pop(number, None)
            self._changed.discard(number)
        for number, info in self._capacities.items():
            node = self._nodes[number]()
            if node is not None and node.info is not info:
                self._changed.add(number)
        while self._changed:
            number = self._changed.pop()
            node = self._nodes[number]()
            if node is not None:
                self._place(number, node)

    def _unplace(self, number: int) -> None:
        entry = self._entries[number]
        if entry is not None:
            del self._order[bisect.bisect_left(self._order, entry)]

    def _place(self, number: int, node: Node) -> None:
        self._unplace(number)
        weight = weigh(node, NOTHING)
        entry = (-self._rate(weight), node.address, number) if weight.fits else None
        self._entries[number] = entry
        if entry is not None:
            bisect.insort(self._order, entry)
        # A node that reserves nothing weighs the same whatever its capacity.
        if node.load.reserved_cpus or node.load.reserved_memory:
            self._capacities[number] = node.info
        else:
            self._capacities.pop(number, None)


class Weighing(Scheduler):
    """A strategy that scores the nodes with room and picks the best; ties go to the first
    in address order, so placement is stable."""

    def __init__(self, storage: Storage | None = None) -> None:
        super().__init__(storage)
        self._ranking = self._new_ranking()

    @abc.abstractmethod
    def rate(self, weight: Weight) -> float:
        """A node's score by its weight, higher first."""

    def _new_ranking(self) -> Ranking | None:
        # A subclass that scores otherwise than by `rate` is not followed by the ranking.
        return Ranking(self.rate) if type(self).scores is Weighing.scores else None

    async def scores(self, nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, float]:
        return {node: self.rate(weight) for node, weight in weights(nodes, request).items()}

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        wanted = reservation_of(request.config)
        if wanted == NOTHING and self._ranking is not None:
            chosen = self._ranking.best(nodes)
        else:
            scored = await self.scores(nodes, request)
            chosen = min(scored, key=lambda n: (-scored[n], n.address)) if scored else None
        if chosen is None:
            raise NoNodeAvailable(
                f"no node has room for {wanted.cpus:g} CPUs and {wanted.memory} bytes of "
                f"memory reserved (tried {', '.join(n.name for n in nodes)})"
            )
        return chosen

    async def for_dry_mode(self, storage: Storage) -> Scheduler:
        copy = await super().for_dry_mode(storage)
        assert isinstance(copy, Weighing)
        # Dry mode's nodes are copies of the real ones: ranked apart from them.
        copy._ranking = copy._new_ranking()
        return copy
