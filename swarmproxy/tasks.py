"""Running work that must finish even when whoever asked for it goes away, and stopping
work that must stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def shielded(coroutine: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """Run to the end even if the caller is cancelled: what a node did must reach the index."""
    task = asyncio.ensure_future(coroutine)
    # Nobody may await it after a cancel: fetch its outcome so it is never reported lost.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return asyncio.shield(task)


# How often a task that ignored its cancellation is cancelled again.
_CANCEL_AGAIN_SECONDS = 0.1


async def stopped(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until every one has ended. Python 3.11's `wait_for` can
    swallow a cancellation that lands as its inner work completes; a loop that ran into
    that goes on as if never cancelled, so the tasks still running are cancelled again."""
    every = list(tasks)
    left = {task for task in every if not task.done()}
    while left:
        for task in left:
            task.cancel()
        _, pending = await asyncio.wait(left, timeout=_CANCEL_AGAIN_SECONDS)
        left = set(pending)
    for task in every:
        # Their outcome is of no more use: fetched, so that none is reported lost.
        if not task.cancelled():
            task.exception()
