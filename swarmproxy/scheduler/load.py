"""What each node carries, for the strategies that weigh it (spread, binpack): its active
containers and the CPU and memory they reserve.

Kept in process, from a listing of the node when it joins (and once a minute after), from
its container events as they come, and from the proxy's own creates at once, so that the
next placement already counts the container just made (read-your-writes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Docker's CPU shares for one CPU: `--cpu-shares 512` reserves half of one.
SHARES_PER_CPU = 1024


@dataclass(frozen=True)
class Reservation:
    cpus: float = 0.0
    memory: int = 0


def reservation_of(config: Mapping[str, Any]) -> Reservation:
    """What a create body (or a container's inspect) reserves: `--cpus` (NanoCpus) or
    `--cpu-shares`, and `--memory` or `--memory-reservation`, whichever is given."""
    host = config.get("HostConfig") or {}
    cpus = _number(host.get("NanoCpus")) / 1e9 or _number(host.get("CpuShares")) / SHARES_PER_CPU
    memory = int(_number(host.get("Memory")) or _number(host.get("MemoryReservation")))
    return Reservation(cpus, memory)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


@dataclass
class NodeLoad:
    # Created and not started yet, or running: what a strategy counts as a node's work.
    # A created container counts at once, so a burst of creates spreads before any starts.
    pending: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    reserved: dict[str, Reservation] = field(default_factory=dict)
    # The active containers' reservations summed, until the next change: every placement
    # weighs every node, and a node may carry many containers.
    _sums: Reservation | None = field(default=None, repr=False, compare=False)
    # Told of every change: what keeps nodes in order of their load (weighing.Ranking)
    # re-weighs only the nodes whose load changed.
    _watchers: list[Callable[[], None]] = field(default_factory=list, repr=False, compare=False)

    @property
    def active(self) -> int:
        return len(self.pending) + len(self.running)

    @property
    def reserved_cpus(self) -> float:
        return self._summed().cpus

    @property
    def reserved_memory(self) -> int:
        return self._summed().memory

    def _summed(self) -> Reservation:
        if self._sums is None:
            held = [self.reserved[c] for c in (*self.pending, *self.running) if c in self.reserved]
            self._sums = Reservation(sum(r.cpus for r in held), sum(r.memory for r in held))
        return self._sums

    def watch(self, watcher: Callable[[], None]) -> None:
        self._watchers.append(watcher)

    def _changed(self) -> None:
        self._sums = None
        for watcher in self._watchers:
            watcher()

    def created(self, container_id: str, reservation: Reservation | None = None) -> None:
        if container_id not in self.running:
            self.pending.add(container_id)
        if reservation is not None:
            self.reserved[container_id] = reservation
        self._changed()

    def started(self, container_id: str) -> None:
        self.pending.discard(container_id)
        self.running.add(container_id)
        self._changed()

    def stopped(self, container_id: str) -> None:
        self.pending.discard(container_id)
        self.running.discard(container_id)
        self._changed()

    def removed(self, container_id: str) -> None:
        self.reserved.pop(container_id, None)
        self.stopped(container_id)

    def knows(self, container_id: str) -> bool:
        return container_id in self.reserved

    def replace(self, listing: list[dict[str, Any]], reserved: dict[str, Reservation]) -> None:
        """Take a fresh listing of the node (`/containers/json?all=1`) as the truth."""
        self.pending = {c["Id"] for c in listing if c.get("State") == "created"}
        self.running = {c["Id"] for c in listing if c.get("State") in ("running", "paused")}
        self.reserved = reserved
        self._changed()

    def __deepcopy__(self, memo: dict[int, Any]) -> NodeLoad:
        # Dry mode's copy of a node carries the same containers, but nothing that watches
        # the real node's load watches the copy's.
        return NodeLoad(set(self.pending), set(self.running), dict(self.reserved))
