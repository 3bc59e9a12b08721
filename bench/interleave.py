"""Targets take turns: machine noise (a shared, small box) falls on all of them alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def turn_order(round_index: int, targets: Sequence[T]) -> list[T]:
    """Each round starts one target further on, so that none always goes first (with two
    targets: direct then proxy, then proxy then direct)."""
    shift = round_index % len(targets)
    return [*targets[shift:], *targets[:shift]]


async def interleaved(
    rounds: int, targets: Sequence[T], measure: Callable[[T], Awaitable[None]]
) -> None:
    for round_index in range(rounds):
        for target in turn_order(round_index, targets):
            await measure(target)
