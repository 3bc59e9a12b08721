"""The in-process map of full container ID to node: bounded, least recently used first out."""

from __future__ import annotations

from swarmproxy.cluster.route_cache import RouteCache


def test_keeps_drops_and_forgets_the_least_recently_used() -> None:
    cache = RouteCache(size=2)
    cache.keep("a" * 64, "tcp://n1:2375")
    cache.keep("b" * 64, "tcp://n2:2375")
    assert cache.get("a" * 64) == "tcp://n1:2375"
    # "b" was used least recently: a third entry pushes it out.
    cache.keep("c" * 64, "tcp://n3:2375")
    assert cache.get("b" * 64) is None
    assert (cache.get("a" * 64), cache.get("c" * 64)) == ("tcp://n1:2375", "tcp://n3:2375")
    cache.drop("a" * 64)
    cache.drop("never-kept")
    assert cache.get("a" * 64) is None
    assert len(cache) == 1
