"""Healers decide how long a failing node is left alone (the seed's `Healer`).

A healer is pluggable: `[health] healer = "package.module:Class"` names a class whose
instances have `handle_error(node) -> seconds`. The default backs off with the number of
consecutive failures, so a node that is down for long is not hammered, and a node that
failed once is back soon.
"""

from __future__ import annotations

from typing import Protocol

from swarmproxy import imports
from swarmproxy.storage import NodeRecord


class Healer(Protocol):
    def handle_error(self, node: NodeRecord) -> float:
        """Seconds to disable `node` for, given its failures (0: leave it enabled)."""
        ...


class BackoffHealer:
    """5 s after the first failure, doubling with each one after, up to 5 minutes."""

    def __init__(self, first: float = 5.0, cap: float = 300.0) -> None:
        self.first = first
        self.cap = cap

    def handle_error(self, node: NodeRecord) -> float:
        if node.failures < 1:
            return 0.0
        return float(min(self.cap, self.first * 2 ** min(node.failures - 1, 32)))


def load_healer(spec: str) -> Healer:
    """`package.module:Class`, instantiated with no arguments; "" is the default healer."""
    if not spec:
        return BackoffHealer()
    healer: Healer = imports.load(spec, "healer", "package.module:Class")()
    if not callable(getattr(healer, "handle_error", None)):
        raise ValueError(f"healer {spec!r} has no handle_error(node)")
    return healer
