from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from swarmproxy.scheduler.base import Scheduler, SchedulingRequest

if TYPE_CHECKING:
    # The cluster core imports the scheduler: only the types may come back this way.
    from swarmproxy.cluster.node import Node
    from swarmproxy.storage import Storage

# The rotation's counter in storage, shared by every replica.
COUNTER = "scheduler:round-robin"


class RoundRobin(Scheduler):
    """Each new container goes to the next node in address order (the seed's default).
    The turn is counted in storage, so replicas on one Redis rotate together."""

    name = "round-robin"

    def __init__(self, storage: Storage | None = None) -> None:
        super().__init__(storage)
        # Without storage the turns are this object's own.
        self._turns = 0
        # Turns already taken elsewhere: dry mode goes on from the real rotation.
        self._offset = 0
        # The last nodes given, and the same in address order: the candidates are most
        # often the same nodes from one decision to the next, and comparing them with the
        # last ones costs far less than sorting them again.
        self._order: tuple[tuple[Node, ...], list[Node]] = ((), [])

    async def _take_turn(self) -> int:
        if self.storage is None:
            self._turns += 1
            return self._turns - 1
        return self._offset + await self.storage.increment(COUNTER) - 1

    async def _next_turn(self) -> int:
        if self.storage is None:
            return self._turns
        return self._offset + await self.storage.counter(COUNTER)

    def _in_order(self, nodes: Sequence[Node]) -> list[Node]:
        given = tuple(nodes)
        if given != self._order[0]:
            self._order = (given, sorted(given, key=attrgetter("address")))
        return self._order[1]

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        ordered = self._in_order(nodes)
        return ordered[await self._take_turn() % len(ordered)]

    async def scores(self, nodes: Sequence[Node], request: SchedulingRequest) -> dict[Node, float]:
        """The node whose turn is next rates highest, the one after it next, and so on."""
        ordered = self._in_order(nodes)
        turn = await self._next_turn() % len(ordered) if ordered else 0
        return {n: float(len(ordered) - (i - turn) % len(ordered)) for i, n in enumerate(ordered)}

    async def for_dry_mode(self, storage: Storage) -> Scheduler:
        copy = await super().for_dry_mode(storage)
        assert isinstance(copy, RoundRobin)
        # Dry mode's storage counts from zero: its turns start where the real ones are.
        copy._offset = await self._next_turn()
        return copy
