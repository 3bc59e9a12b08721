"""`ps` from each node's kept container list, against real nodes.

It gives what the nodes give (fields, status text, order); the proxy's own changes show
in the very next `ps` (in its process, and in another replica through storage before the
replica's events say so); a change made straight on a node shows once its events arrive;
and a node whose list is not trusted is listed directly.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from swarmproxy.cluster import Cluster
from swarmproxy.cluster import core as cluster_core
from swarmproxy.cluster.watch import NodeWatcher
from swarmproxy.local_nodes import IMAGE, DockerNode
from swarmproxy.storage.redis import RedisStorage
from tests.rig.library import library_cluster
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SLEEPER = {"Image": IMAGE, "Cmd": ["sleep", "300"]}


def node_listing(node: DockerNode, all: bool = True) -> list[dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        connection.request("GET", f"/v1.41/containers/json?all={int(all)}")
        listing: list[dict[str, Any]] = json.loads(connection.getresponse().read())
        return listing
    finally:
        connection.close()


def proxy_listing(proxy: Proxy, all: bool = True) -> list[dict[str, Any]]:
    status, listing = proxy.json("GET", f"/v1.41/containers/json?all={int(all)}")
    assert status == 200, listing
    return list(listing)


def ids(listing: list[dict[str, Any]]) -> list[str]:
    return [c["Id"] for c in listing]


def settled(compare: Callable[[], None], attempts: int = 3) -> None:
    """`compare` taken again when the two readings fell on both sides of a second."""
    for attempt in range(attempts):
        try:
            compare()
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.3)


def test_ps_gives_what_the_nodes_give(cluster: Proxy, nodes: list[DockerNode]) -> None:
    cluster.docker("run", "-d", "--name", "up", "-l", "team=a", "busybox", "sleep", "300")
    cluster.docker("run", "--name", "failed", "busybox", "sh", "-c", "exit 3", check=False)
    cluster.docker("create", "--name", "made", "busybox", "true")
    cluster.docker("run", "-d", "--name", "held", "busybox", "sleep", "300")
    cluster.docker("pause", "held")
    time.sleep(1.2)
    proxy_listing(cluster)  # the lists are read here; the next ones are rendered from them

    def compare() -> None:
        direct = {c["Id"]: c for node in nodes for c in node_listing(node)}
        listed = proxy_listing(cluster)
        assert sorted(ids(listed)) == sorted(direct)
        for container in listed:
            node = container.pop("Node")
            assert node["Name"] in {n.name for n in nodes}
            assert container == direct[container["Id"]]

    settled(compare)
    statuses = {c["Names"][0]: c["Status"] for c in proxy_listing(cluster)}
    assert statuses["/made"] == "Created"
    assert statuses["/failed"].startswith("Exited (3) ")
    assert statuses["/held"].endswith("(Paused)")
    running = {c["Names"][0] for c in proxy_listing(cluster, all=False)}
    assert running == {"/up", "/held"}


def test_ps_orders_as_the_daemon_does_across_nodes(cluster: Proxy) -> None:
    made = [cluster.docker("create", "busybox", "true").stdout.strip() for _ in range(6)]
    created = {}
    for container_id in made:
        _, inspected = cluster.json("GET", f"/containers/{container_id}/json")
        created[container_id] = inspected["Created"]
    listed = [i for i in ids(proxy_listing(cluster)) if i in created]
    assert listed == sorted(made, key=lambda i: created[i], reverse=True)


def test_status_is_rendered_at_each_ps(cluster: Proxy, nodes: list[DockerNode]) -> None:
    container_id = cluster.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    first = next(c for c in proxy_listing(cluster) if c["Id"] == container_id)
    assert first["Status"] in ("Up Less than a second", "Up 1 second")
    time.sleep(2.5)

    def compare() -> None:
        direct = next(c for n in nodes for c in node_listing(n) if c["Id"] == container_id)
        listed = next(c for c in proxy_listing(cluster) if c["Id"] == container_id)
        assert listed["Status"] == direct["Status"]
        assert listed["Status"] not in ("Up Less than a second", "Up 1 second")

    settled(compare)


def test_each_change_shows_in_the_very_next_ps(cluster: Proxy) -> None:
    def listed(*flags: str) -> list[str]:
        return cluster.docker(
            "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}", *flags
        ).stdout.split("\n")

    for round_ in range(3):
        name = f"rw-{round_}"
        container_id = cluster.docker(
            "create", "--name", name, "busybox", "sleep", "300"
        ).stdout.strip()
        assert f"{container_id} {name}" in listed("-a")
        assert f"{container_id} {name}" not in listed()
        cluster.docker("start", name)
        assert f"{container_id} {name}" in listed()
        cluster.docker("rename", name, f"{name}-renamed")
        assert f"{container_id} {name}-renamed" in listed()
        cluster.docker("kill", f"{name}-renamed")
        assert f"{container_id} {name}-renamed" not in listed()
        assert f"{container_id} {name}-renamed" in listed("-a")
        cluster.docker("rm", f"{name}-renamed")
        assert not any(line.startswith(container_id) for line in listed("-a"))
    # A container that ends (and is removed) by itself, waited for through the proxy.
    cluster.docker("run", "--rm", "--name", "gone", "busybox", "true")
    assert not any(line.endswith(" gone") for line in listed("-a"))
    cluster.docker("run", "--name", "ended", "busybox", "true")
    assert not any(line.endswith(" ended") for line in listed())
    assert any(line.endswith(" ended") for line in listed("-a"))


def test_a_change_made_on_a_node_shows_once_its_events_arrive(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    proxy_listing(cluster)
    container_id = nodes[1].docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    wait_for(lambda: container_id in ids(proxy_listing(cluster, all=False)), timeout=5)
    nodes[1].docker("stop", "-t", "0", container_id)
    wait_for(lambda: container_id not in ids(proxy_listing(cluster, all=False)), timeout=5)
    nodes[1].docker("rm", container_id)
    wait_for(lambda: container_id not in ids(proxy_listing(cluster)), timeout=5)


def test_label_filters_pick_as_the_nodes_do(cluster: Proxy, nodes: list[DockerNode]) -> None:
    made = {
        labels: cluster.docker("create", *labels, "busybox", "true").stdout.strip()
        for labels in [("-l", "pick=me"), ("-l", "pick=you"), ("-l", "pick=me", "-l", "x="), ()]
    }
    proxy_listing(cluster)
    for wanted in (["pick=me"], ["pick"], ["pick=me", "x"], ["x="], ["nothing"]):
        flags = [f for label in wanted for f in ("--filter", f"label={label}")]
        through = cluster.docker("ps", "-aq", "--no-trunc", *flags).stdout.split()
        direct = {
            i for n in nodes for i in n.docker("ps", "-aq", "--no-trunc", *flags).stdout.split()
        }
        assert sorted(through) == sorted(direct), wanted
        assert set(through) <= set(made.values())
    assert cluster.docker("ps", "-q", "--filter", "label=pick").stdout.split() == []


def test_other_filters_and_limits_go_to_the_nodes(cluster: Proxy) -> None:
    labelled = cluster.docker("run", "-d", "--name", "picked", "busybox", "sleep", "300").stdout
    cluster.docker("run", "-d", "busybox", "sleep", "300")
    picked = cluster.docker("ps", "-q", "--no-trunc", "--filter", "name=picked").stdout.split()
    assert picked == [labelled.strip()]
    newest = cluster.docker("ps", "-q", "--no-trunc", "-n", "1").stdout.split()
    assert newest == ids(proxy_listing(cluster))[:1]


# --- the mechanism, with the cluster as a library ---------------------------------------


class DeafWatcher(NodeWatcher):
    """Follows a node's events but heeds none: what its cluster lists of changes it did
    not make itself can then only come from storage's change log, or the node."""

    async def _apply(self, event: dict[str, Any]) -> None:
        return None


@asynccontextmanager
async def replicas(
    nodes: list[DockerNode], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Cluster, Cluster]]:
    """Two clusters on one Redis; the second heeds no event."""
    prefix = f"sp-{uuid.uuid4().hex[:8]}:"
    async with library_cluster(nodes, storage=RedisStorage(redis_server.url, prefix)) as first:
        with monkeypatch.context() as patched:
            patched.setattr(cluster_core, "NodeWatcher", DeafWatcher)
            async with library_cluster(
                nodes, storage=RedisStorage(redis_server.url, prefix)
            ) as second:
                await until(lambda: all(n.containers.live for n in second.nodes))
                yield first, second


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def listed_ids(cluster: Cluster, all: bool = True) -> list[str]:
    return [c["Id"] for c in await cluster.list_containers(all=all)]


async def test_another_replicas_changes_show_before_its_events_do(
    nodes: list[DockerNode], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(nodes, redis_server, monkeypatch) as (first, second):
        await second.list_containers(all=True)
        made = [(await first.create_container(SLEEPER)).id for _ in range(4)]
        assert set(made) <= set(await listed_ids(second))
        assert not set(made) & set(await listed_ids(second, all=False))
        await first.start_container(made[0])
        assert made[0] in await listed_ids(second, all=False)
        await first.kill_container(made[0])
        assert made[0] not in await listed_ids(second, all=False)
        await first.remove_container(made[1], force=True)
        assert made[1] not in await listed_ids(second)
        # The deaf replica does list from its kept lists: a container made on a node
        # behind both proxies' backs is not in them.
        behind = nodes[0].docker("create", "busybox", "true").stdout.strip()
        await until(lambda: any(behind in n.containers.stale() for n in first.nodes))
        assert behind in await listed_ids(first)
        assert behind not in await listed_ids(second)
        for container_id in (made[0], *made[2:], behind):
            await first.remove_container(container_id, force=True)


async def test_own_changes_show_without_events(
    nodes: list[DockerNode], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(nodes, redis_server, monkeypatch) as (_, deaf):
        made = (await deaf.create_container(SLEEPER)).id
        assert made in await listed_ids(deaf)
        await deaf.start_container(made)
        assert made in await listed_ids(deaf, all=False)
        await deaf.remove_container(made, force=True)
        assert made not in await listed_ids(deaf)


async def test_a_node_whose_list_is_not_trusted_is_asked(
    nodes: list[DockerNode], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(nodes, redis_server, monkeypatch) as (_, deaf):
        await deaf.list_containers(all=True)
        node = deaf.find_node(nodes[2].name)
        node.containers.lost()
        behind = nodes[2].docker("create", "busybox", "true").stdout.strip()
        try:
            assert behind in await listed_ids(deaf)
        finally:
            nodes[2].docker("rm", behind)
