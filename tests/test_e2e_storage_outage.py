"""Redis stopped for 30 s under a running proxy: reads and routing go on, unnamed containers are
still made, a new name is refused (it could not be reserved cluster-wide), the outage
shows in `docker info` and the health endpoint; when Redis is back (empty), the index is
complete again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.index import indexed
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HEALTH = "/swarmproxy/v1/health"


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """A Redis of the test's own (it is stopped and started again), in a list the test
    updates when it restarts it."""
    servers = [RedisServer.start(tmp_path_factory.mktemp("outage-redis"))]
    try:
        yield servers
    finally:
        servers[-1].stop()


def test_the_proxy_serves_through_a_redis_outage(
    nodes: list[DockerNode],
    own_redis: list[RedisServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = own_redis[0]
    prefix = "sp-outage:"
    proxy = Proxy.start(tmp_path_factory.mktemp("outage"), nodes, server.url, prefix)
    try:
        named = {
            f"out-{i}": proxy.docker(
                "run", "-d", "--name", f"out-{i}", "busybox", "sh", "-c", "echo hello; sleep 300"
            ).stdout.strip()
            for i in range(3)
        }
        assert proxy.admin("GET", HEALTH)[0] == 200

        server.stop()
        stopped = time.monotonic()
        # The first call to need storage finds it gone; reads go on from what is kept.
        for name, container_id in named.items():
            assert json.loads(proxy.docker("inspect", name).stdout)[0]["Id"] == container_id
            assert proxy.docker("logs", name).stdout == "hello\n"
            assert proxy.docker("inspect", container_id[:12]).returncode == 0
        listed = proxy.docker("ps", "--format", "{{.Names}}").stdout.split()
        assert set(named) <= set(listed)
        unnamed = proxy.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
        assert proxy.docker("exec", unnamed, "echo", "still").stdout == "still\n"
        refused = proxy.docker("create", "--name", "during", "busybox", "true", check=False)
        assert refused.returncode != 0
        assert "cannot reserve the name 'during' cluster-wide" in refused.stderr
        assert "Storage: unavailable since" in proxy.docker("info").stdout
        status, health = proxy.admin("GET", HEALTH)
        assert status == 503 and health["Storage"]["Available"] is False
        # The outage lasts 30 s; reads and unnamed creates go on all along.
        while time.monotonic() - stopped < 30:
            assert proxy.docker("logs", "out-0").stdout == "hello\n"
            time.sleep(2)
        assert json.loads(proxy.docker("inspect", "out-1").stdout)[0]["Id"] == named["out-1"]
        proxy.docker("run", "--rm", "busybox", "true")

        own_redis.append(server.restart())
        wait_for(lambda: proxy.admin("GET", HEALTH)[0] == 200, 20)
        # Back, but empty: the registry and the index are made again from the nodes.
        everything = [*named.values(), unnamed]
        wait_for(lambda: indexed(server.url, prefix, everything), 20)
        assert " Nodes: 3" in proxy.docker("info").stdout
        proxy.docker("create", "--name", "after", "busybox", "true")
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()


def test_an_idle_proxy_is_unready_as_soon_as_redis_is_gone(
    nodes: list[DockerNode],
    own_redis: list[RedisServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = own_redis[0]
    proxy = Proxy.start(tmp_path_factory.mktemp("idle-outage"), nodes, server.url, "sp-idle:")
    try:
        wait_for(lambda: proxy.admin("GET", HEALTH)[0] == 200, timeout=15)
        server.stop()
        # No request has needed storage since: the health check asks it itself.
        status, health = proxy.admin("GET", HEALTH)
        assert status == 503 and health["Storage"]["Available"] is False
        assert health["ReadyNodes"] == len(nodes)
    finally:
        proxy.stop()
