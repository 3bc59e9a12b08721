"""Hooks: loading by import path, running plain and async ones, refusing."""

from __future__ import annotations

import pytest

from swarmproxy.cluster.hooks import HookRefused, Hooks, load_hook


def test_hooks_run_in_order_and_the_first_refusal_stops() -> None:
    seen: list[str] = []

    def plain(value: str) -> None:
        seen.append(f"plain {value}")

    async def refusing(value: str) -> None:
        seen.append(f"async {value}")
        raise ValueError("not this one")

    hooks = Hooks()
    hooks.add("before_node_unregister", plain)
    hooks.add("before_node_unregister", refusing)
    hooks.add("before_node_unregister", plain)

    import asyncio

    with pytest.raises(HookRefused) as refused:
        asyncio.run(hooks.run("before_node_unregister", "x"))
    assert seen == ["plain x", "async x"]
    assert refused.value.status == 409
    assert "refused by hook" in refused.value.message and "not this one" in refused.value.message


def test_hooks_are_named_by_import_path() -> None:
    assert load_hook("tests.hooks_for_tests:keep_pinned").__name__ == "keep_pinned"
    for bad in ("nocolon", "tests.hooks_for_tests:missing", "no.such:thing"):
        with pytest.raises(ValueError):
            load_hook(bad)
    with pytest.raises(ValueError):
        Hooks().add("after_everything", print)
