"""Session fixtures: three real dockerd nodes, a real redis-server, and the proxy in front.

Every end-to-end test runs twice: against a proxy on the embedded storage and against one
on Redis.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from swarmproxy.local_nodes import DockerNode, start_nodes, stop_nodes
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer


@pytest.fixture(scope="session")
def nodes() -> Iterator[list[DockerNode]]:
    started = start_nodes(3)
    try:
        yield started
    finally:
        stop_nodes(started)


@pytest.fixture
def crashing_node() -> Iterator[DockerNode]:
    """A node of the test's own, beside the shared three, for a test that kills its daemon."""
    (node,) = start_nodes(1)
    node.name = "crashing"
    try:
        yield node
    finally:
        stop_nodes([node])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


def start_proxy(
    request: pytest.FixtureRequest,
    kind: str,
    nodes: list[DockerNode],
    workdir: pathlib.Path,
    **options: Any,
) -> Proxy:
    """A proxy on the embedded storage or on the session's Redis; `options` go to
    Proxy.start."""
    if kind == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"sp-{uuid.uuid4().hex[:8]}:"
        return Proxy.start(workdir, nodes, redis.url, prefix=prefix, **options)
    return Proxy.start(workdir, nodes, **options)


@pytest.fixture(scope="session", params=["memory", "redis"])
def proxy(
    request: pytest.FixtureRequest,
    nodes: list[DockerNode],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    started = start_proxy(request, request.param, nodes, tmp_path_factory.mktemp("proxy"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster(proxy: Proxy, nodes: list[DockerNode]) -> Iterator[Proxy]:
    """The proxy, with no container on any node before and after the test.

    Containers are removed through the proxy, so its index stays true.
    """
    clear(proxy, nodes)
    yield proxy
    clear(proxy, nodes)


def clear(proxy: Proxy, nodes: list[DockerNode]) -> None:
    ids = proxy.docker("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        proxy.docker("rm", "-f", *ids, timeout=120)
    for node in nodes:
        node.remove_all_containers()
