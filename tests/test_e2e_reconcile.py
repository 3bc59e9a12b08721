"""The index made true to the nodes again: after things done behind the proxy's back, a
storage wiped clean, and a proxy killed in the middle of creates."""

from __future__ import annotations

import json
import pathlib
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from swarmproxy.cluster import Cluster
from swarmproxy.local_nodes import DockerNode
from swarmproxy.storage import ContainerRecord
from tests.rig.index import index_names
from tests.rig.library import library_cluster
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

BOGUS = "f" * 64


@pytest.fixture
async def library(nodes: list[DockerNode]) -> AsyncIterator[Cluster]:
    async with library_cluster(nodes) as cluster:
        try:
            yield cluster
        finally:
            for node in nodes:
                node.remove_all_containers()
                node.docker("volume", "prune", "-f", check=False)


async def test_reconcile_adopts_drops_and_renames(
    library: Cluster, nodes: list[DockerNode]
) -> None:
    storage = library.storage
    # Made behind the proxy's back, one of them under a name a dead create still claims.
    behind = nodes[1].docker("create", "--name", "behind", "busybox", "true").stdout.strip()
    claimed = nodes[2].docker("create", "--name", "claimed", "busybox", "true").stdout.strip()
    assert await storage.reserve_name("claimed", "pending:dead:0") is None
    # Indexed, but gone from the node; renamed straight on the node.
    await storage.store_container(BOGUS, nodes[0].tcp_address, "ghost")
    kept = (await library.create_container({"Image": "busybox"}, "before")).id
    (holder,) = [n for n in nodes if kept in n.container_ids()]
    holder.docker("rename", "before", "after")
    # Volumes and images too.
    nodes[0].docker("volume", "create", "made-behind")
    await storage.store_volume("vanished", nodes[0].tcp_address)
    await storage.store_image("gone:v1", "sha256:" + "e" * 64, nodes[0].tcp_address)

    done = await library.reconcile()

    assert done.skipped == 0
    assert await storage.retrieve_container(behind) == ContainerRecord(
        behind, nodes[1].tcp_address, "behind"
    )
    assert await storage.retrieve_name("claimed") == claimed
    assert await storage.retrieve_container(BOGUS) is None
    assert await storage.retrieve_name("ghost") is None
    assert await storage.retrieve_name("after") == kept
    assert nodes[0].tcp_address in await storage.retrieve_volume("made-behind")
    assert await storage.retrieve_volume("vanished") == set()
    assert await storage.retrieve_image("gone:v1") is None
    busybox = await storage.retrieve_image("busybox:latest")
    assert busybox is not None and busybox.nodes == {n.tcp_address for n in nodes}
    # Nothing left to do the second time.
    again = await library.reconcile()
    assert (again.added, again.dropped, again.renamed) == (0, 0, 0)


async def test_an_exec_unknown_to_the_index_is_found_on_its_node(
    library: Cluster, nodes: list[DockerNode]
) -> None:
    container = nodes[1].docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    created = nodes[1].docker(
        "exec", "-d", container, "sleep", "1", check=False
    )  # an exec the index never saw
    assert created.returncode == 0
    inspected = json.loads(nodes[1].docker("inspect", container).stdout)[0]
    (exec_id,) = inspected["ExecIDs"]
    found, node = await library.locate_exec(exec_id)
    assert (found, node.name) == (container, nodes[1].name)
    assert await library.storage.retrieve_exec(exec_id) == container


def test_a_wiped_redis_loses_nothing(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path: pathlib.Path
) -> None:
    prefix = f"sp-wipe-{time.monotonic_ns()}:"
    proxy = Proxy.start(tmp_path, nodes, redis_server.url, prefix)
    try:
        made = {
            f"wiped-{i}": proxy.docker(
                "create", "--name", f"wiped-{i}", "busybox", "true"
            ).stdout.strip()
            for i in range(6)
        }
        redis.Redis.from_url(redis_server.url).flushall()
        # Lookups ask the nodes; the registry is restored at the next round.
        for name, container_id in made.items():
            inspected = json.loads(proxy.docker("inspect", name).stdout)[0]
            assert inspected["Id"] == container_id
            assert proxy.docker("inspect", container_id[:12]).returncode == 0
        wait_for(lambda: " Nodes: 3" in proxy.docker("info").stdout, 20)
        # The index is whole again: every container, with its name.
        wait_for(lambda: index_names(redis_server.url, prefix, list(made)) == made, 20)
        listed = proxy.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert sorted(n for n in listed if n.startswith("wiped-")) == sorted(made)
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()


def test_a_proxy_killed_during_named_creates_loses_nothing(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGKILL at random points of 100 creates with names, each time restarted: every
    container the nodes hold resolves by ID, prefix and name, and no name has two."""
    prefix = f"sp-kill-{time.monotonic_ns()}:"
    rng = random.Random(20261124)
    kills = set(rng.sample(range(100), 6))

    def start() -> Proxy:
        return Proxy.start(tmp_path_factory.mktemp("killed"), nodes, redis_server.url, prefix)

    proxy = start()
    try:
        for i in range(100):
            name = f"k9-{i}"
            if i not in kills:
                proxy.docker("create", "--name", name, "busybox", "true")
                continue
            creating = threading.Thread(
                target=proxy.docker,
                args=("create", "--name", name, "busybox", "true"),
                kwargs={"check": False},
            )
            creating.start()
            time.sleep(rng.uniform(0.0, 0.25))
            proxy.process.kill()
            proxy.process.wait()
            creating.join(60)
            proxy = start()

        on_nodes: dict[str, str] = {}
        names: Counter[str] = Counter()
        for node in nodes:
            listed = node.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
            for line in listed.stdout.splitlines():
                container_id, name = line.split()
                if name.startswith("k9-"):
                    on_nodes[name] = container_id
                    names[name] += 1
        assert len(on_nodes) >= 94 and set(names.values()) == {1}
        for name, container_id in on_nodes.items():
            for ref in (name, container_id, container_id[:12]):
                inspected = json.loads(proxy.docker("inspect", ref).stdout)[0]
                assert inspected["Id"] == container_id, ref
        wait_for(lambda: index_names(redis_server.url, prefix, list(on_nodes)) == on_nodes, 20)
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()


def test_two_replicas_racing_on_one_name_make_one_container(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = f"sp-race-{time.monotonic_ns()}:"
    replicas = [
        Proxy.start(tmp_path_factory.mktemp(f"race-{i}"), nodes, redis_server.url, prefix)
        for i in (1, 2)
    ]
    try:
        for i in range(50):
            results: list[subprocess.CompletedProcess[str]] = []

            def create(proxy: Proxy, name: str, into: list[Any]) -> None:
                into.append(proxy.docker("create", "--name", name, "busybox", "true", check=False))

            racers = [
                threading.Thread(target=create, args=(p, f"race-{i}", results)) for p in replicas
            ]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(60)
            won = [r for r in results if r.returncode == 0]
            lost = [r for r in results if r.returncode != 0]
            assert len(won) == 1 and len(lost) == 1, [r.stderr for r in results]
            assert 'Conflict. The container name "/race-' in lost[0].stderr
        made = [
            name
            for node in nodes
            for name in node.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
            if name.startswith("race-")
        ]
        assert sorted(made) == sorted(f"race-{i}" for i in range(50))
    finally:
        for proxy in replicas:
            proxy.stop()
        for node in nodes:
            node.remove_all_containers()
