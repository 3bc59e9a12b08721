"""What the proxy knows of a node's health: the seed's status machine.

- `waiting`: registered, never answered;
- `ready`: answered, and its last call succeeded;
- `ready for retry`: enabled, but with failures since its last success;
- `temporarily disabled`: a healer disabled it until a time, after failures;
- `healing`: a healing lock is held on it while a decision about it is taken.

Every call to a node feeds it (a transport failure, or a success); the cluster shares the
failures, the disabling and the lock through storage, so every proxy replica agrees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class NodeStatus(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    RETRY = "ready for retry"
    DISABLED = "temporarily disabled"
    HEALING = "healing"


# Statuses whose node may be called: a disabled or healing one answers fast with a 503.
CALLABLE = frozenset({NodeStatus.WAITING, NodeStatus.READY, NodeStatus.RETRY})

# Told of every failure, and of the first success after failures, by whoever saw it.
Listener = Callable[[bool, str], None]


@dataclass
class NodeHealth:
    failures: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    last_success_at: float = 0.0
    disabled_until: float = 0.0
    healing_until: float = 0.0
    listener: Listener | None = None

    @property
    def status(self) -> NodeStatus:
        now = time.time()
        if self.healing_until > now:
            return NodeStatus.HEALING
        if self.disabled_until > now:
            return NodeStatus.DISABLED
        if not self.last_success_at:
            return NodeStatus.WAITING
        if self.failures:
            return NodeStatus.RETRY
        return NodeStatus.READY

    @property
    def ready(self) -> bool:
        return self.status is NodeStatus.READY

    def describe(self) -> str:
        """`temporarily disabled until 21:05:03 after 2 failures: connection refused`."""
        status = self.status
        text = str(status)
        if status is NodeStatus.DISABLED:
            text += " until " + time.strftime("%H:%M:%S", time.localtime(self.disabled_until))
        if self.failures:
            text += f" after {self.failures} failures: {self.last_error}"
        return text

    @property
    def callable(self) -> bool:
        return self.status in CALLABLE

    def record_success(self) -> None:
        recovered = bool(self.failures or self.disabled_until or not self.last_success_at)
        self.last_success_at = time.time()
        if recovered:
            self.failures = 0
            self.disabled_until = 0.0
            if self.listener is not None:
                self.listener(True, "")

    def record_failure(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        self.last_error_at = time.time()
        if self.listener is not None:
            self.listener(False, reason)
