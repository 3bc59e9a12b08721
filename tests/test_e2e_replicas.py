"""Two proxy processes on one Redis serve the same containers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode
from swarmproxy.storage.redis import RedisStorage
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def replicas(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Proxy]]:
    prefix = f"sp-{uuid.uuid4().hex[:8]}:"
    first = Proxy.start(tmp_path_factory.mktemp("replica"), nodes, redis_server.url, prefix)
    second = Proxy.start(tmp_path_factory.mktemp("replica"), nodes, redis_server.url, prefix)
    try:
        yield first, second
    finally:
        for node in nodes:
            node.remove_all_containers()
        first.stop()
        second.stop()


def test_second_proxy_serves_the_first_ones_containers(
    replicas: tuple[Proxy, Proxy], nodes: list[DockerNode]
) -> None:
    first, second = replicas
    for _ in range(4):
        first.docker("create", "busybox", "true")
    container_id = first.docker(
        "run", "-d", "--name", "shared", "busybox", "sh", "-c", "echo from-first; sleep 300"
    ).stdout.strip()
    prefix = container_id[:6]
    for ref in (container_id, prefix, "shared"):
        assert second.docker("inspect", "-f", "{{.Id}}", ref).stdout.strip() == container_id
        assert second.docker("logs", ref).stdout == "from-first\n"
    assert second.docker("exec", "shared", "echo", "via-second").stdout == "via-second\n"
    clash = second.docker("create", "--name", "shared", "busybox", "true", check=False)
    assert clash.returncode != 0 and "Conflict" in clash.stderr
    second.docker("rm", "-f", "shared")
    # The name is free for the first proxy too.
    first.docker("create", "--name", "shared", "busybox", "true")


def test_containers_removed_by_their_node_leave_the_index(
    replicas: tuple[Proxy, Proxy], nodes: list[DockerNode], redis_server: RedisServer
) -> None:
    first, _ = replicas
    auto_removed = first.docker("run", "-d", "--rm", "busybox", "true").stdout.strip()
    behind_back = first.docker("create", "--name", "doomed", "busybox", "true").stdout.strip()
    home = next(n for n in nodes if behind_back in n.container_ids())
    home.docker("rm", behind_back)

    async def indexed(container_id: str) -> bool:
        storage = RedisStorage(redis_server.url, prefix=first.prefix)
        try:
            return await storage.retrieve_container(container_id) is not None
        finally:
            await storage.close()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not any(asyncio.run(indexed(c)) for c in (auto_removed, behind_back)):
            break
        time.sleep(0.2)
    assert not asyncio.run(indexed(auto_removed))
    assert not asyncio.run(indexed(behind_back))
    first.docker("create", "--name", "doomed", "busybox", "true")


def test_a_name_claim_whose_proxy_died_is_recovered(
    replicas: tuple[Proxy, Proxy], nodes: list[DockerNode], redis_server: RedisServer
) -> None:
    """A proxy killed between claiming a name and the node's answer leaves a pending claim."""
    first, _ = replicas
    stale = f"pending:{uuid.uuid4().hex}:{int(time.time()) - 3600}"
    # The node made the container before the proxy died: the container keeps its name.
    ghost = nodes[1].docker("create", "--name", "ghost", "busybox", "true").stdout.strip()

    async def claim(name: str) -> None:
        storage = RedisStorage(redis_server.url, prefix=first.prefix)
        try:
            assert await storage.reserve_name(name, stale) is None
        finally:
            await storage.close()

    asyncio.run(claim("orphan"))
    asyncio.run(claim("ghost"))
    first.docker("create", "--name", "orphan", "busybox", "true")
    clash = first.docker("create", "--name", "ghost", "busybox", "true", check=False)
    assert clash.returncode != 0 and f'by container "{ghost}"' in clash.stderr
    assert first.docker("inspect", "-f", "{{.Id}}", "ghost").stdout.strip() == ghost
