"""Waiting in a test for something the proxy does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
    """Seconds until `predicate()` held, asked every `interval`; fails the test past
    `timeout`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "not within the time allowed"
        time.sleep(interval)
    return time.monotonic() - started
