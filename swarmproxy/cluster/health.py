"""What the proxy knows of a node's health, fed by pings and by every request to the node.

The states are the seed's: `waiting` until the first success, `ready`, and
`ready for retry` once a request or a ping failed; a later success makes it ready again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum


class NodeStatus(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    RETRY = "ready for retry"


@dataclass
class NodeHealth:
    status: NodeStatus = NodeStatus.WAITING
    failures: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    last_success_at: float = 0.0

    @property
    def ready(self) -> bool:
        return self.status is NodeStatus.READY

    def record_success(self) -> None:
        self.status = NodeStatus.READY
        self.failures = 0
        self.last_success_at = time.time()

    def record_failure(self, reason: str) -> None:
        self.status = NodeStatus.RETRY
        self.failures += 1
        self.last_error = reason
        self.last_error_at = time.time()
