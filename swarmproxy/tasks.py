"""Running work that must finish even when whoever asked for it goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def shielded(coroutine: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """Run to the end even if the caller is cancelled: what a node did must reach the index."""
    task = asyncio.ensure_future(coroutine)
    # Nobody may await it after a cancel: fetch its outcome so it is never reported lost.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return asyncio.shield(task)
