"""The node registry through the admin API and `swarmproxy node`, against real nodes, and
shared by two proxy replicas on one Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NODES = "/swarmproxy/v1/nodes"


def rows(proxy: Proxy, *args: str) -> dict[str, list[str]]:
    """`swarmproxy node ls` as {name: the row's cells}."""
    lines = proxy.node_cli("ls", *args).stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ADDRESS", "STATUS"]
    return {line.split()[0]: line.split() for line in lines[1:]}


@pytest.fixture
def replicas(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Proxy]]:
    prefix = f"sp-admin-{time.monotonic_ns()}:"
    started = [
        Proxy.start(tmp_path_factory.mktemp(f"admin-{i}"), nodes[:2], redis_server.url, prefix)
        for i in (1, 2)
    ]
    try:
        yield started[0], started[1]
    finally:
        for proxy in started:
            proxy.stop()
        for node in nodes:
            node.remove_all_containers()


def test_node_ls_shows_every_node_ready(cluster: Proxy, nodes: list[DockerNode]) -> None:
    listed = rows(cluster)
    assert sorted(listed) == ["node-1", "node-2", "node-3"]
    for node in nodes:
        address, status = listed[node.name][1:3]
        assert (address, status) == (node.tcp_address, "ready")
    status, answer = cluster.admin("GET", f"{NODES}?label=index=2")
    assert status == 200 and [n["Name"] for n in answer] == ["node-2"]


def test_the_admin_api_wants_its_token(cluster: Proxy) -> None:
    for token in ("", "wrong"):
        status, answer = cluster.admin("GET", NODES, token=token)
        assert status == 401 and "bearer token" in answer["message"]
    assert cluster.admin("GET", "/swarmproxy/v1/nope") == (404, {"message": "page not found"})
    status, answer = cluster.admin("POST", NODES, {"address": "http://x"})
    assert status == 400 and "node.address" in answer["message"]


def test_a_drained_node_takes_no_new_containers_but_serves_its_own(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    before = cluster.docker("run", "-d", "busybox", "sh", "-c", "echo kept; sleep 300")
    kept = before.stdout.strip()
    holder = next(n for n in nodes if kept in n.container_ids())
    cluster.node_cli("drain", holder.name)
    assert rows(cluster)[holder.name][2:4] == ["ready,", "drained"]
    assert "└ Creation: disabled" in cluster.docker("info").stdout
    _, default = cluster.admin("GET", NODES)
    assert holder.name not in [n["Name"] for n in default]  # the seed's Nodes(): enabled only
    try:
        for _ in range(4):
            placed = cluster.docker("create", "busybox", "true").stdout.strip()
            assert placed not in holder.container_ids()
        assert cluster.docker("logs", kept).stdout == "kept\n"
    finally:
        cluster.node_cli("enable", holder.name)
    assert rows(cluster)[holder.name][2] == "ready"


def test_labels_change_atomically_and_filter(cluster: Proxy) -> None:
    cluster.node_cli("update", "node-3", "--label", "zone=b", "--label", "rack=r7")
    try:
        assert list(rows(cluster, "--label", "zone=b")) == ["node-3"]
        cluster.node_cli("update", "node-3", "--label-rm", "zone")
        status, answer = cluster.admin("GET", f"{NODES}/node-3")
        assert status == 200
        assert answer["Labels"] == {"rig": "yes", "index": "3", "rack": "r7"}
    finally:
        cluster.node_cli("update", "node-3", "--label-rm", "rack", "--label-rm", "zone")


def test_replicas_share_the_registry(
    replicas: tuple[Proxy, Proxy], nodes: list[DockerNode]
) -> None:
    first, second = replicas
    assert sorted(rows(second)) == ["node-1", "node-2"]
    first.node_cli("add", nodes[2].tcp_address, "--name", "late", "--label", "zone=c")
    wait_for(lambda: rows(first)["late"][2] == "ready", 3)
    # The other replica takes it from the shared registry at its next round.
    wait_for(lambda: rows(second).get("late", ["", "", ""])[2] == "ready", 10)
    for _ in range(3):
        placed = second.docker("create", "busybox", "true").stdout.strip()
        if placed in nodes[2].container_ids():
            break
    else:
        pytest.fail("the second replica never placed a container on the node the first added")

    second.node_cli("drain", "node-1")
    wait_for(lambda: rows(first)["node-1"][2:4] == ["ready,", "drained"], 10)
    refused = first.node_cli("rm", "nosuch", check=False)
    assert refused.returncode == 1 and "no node 'nosuch'" in refused.stderr
    first.node_cli("rm", "late")
    wait_for(lambda: "late" not in rows(second), 10)


def test_a_node_in_the_making_takes_containers_once_created(
    replicas: tuple[Proxy, Proxy], nodes: list[DockerNode]
) -> None:
    """The seed's creation statuses: a node registered `pending` (a provisioner still
    making it) is served but takes no containers; `error` neither; `created` does."""
    first, second = replicas
    first.node_cli("add", nodes[2].tcp_address, "--name", "fresh", "--creation-status", "pending")
    wait_for(lambda: rows(second).get("fresh", [""] * 4)[2:4] == ["ready,", "pending"], 10)
    for _ in range(4):
        placed = second.docker("create", "busybox", "true").stdout.strip()
        assert placed not in nodes[2].container_ids()
    first.node_cli("update", "fresh", "--creation-status", "error")
    assert rows(first)["fresh"][2:4] == ["ready,", "error"]
    refused = first.node_cli("update", "fresh", "--creation-status", "bogus", check=False)
    assert refused.returncode == 2  # argparse's choices
    status, answer = first.admin("PATCH", f"{NODES}/fresh", {"creation_status": "bogus"})
    assert status == 400 and "invalid creation status" in answer["message"]

    first.node_cli("update", "fresh", "--creation-status", "created")
    wait_for(lambda: rows(second)["fresh"][2] == "ready", 10)
    for _ in range(3):
        placed = second.docker("create", "busybox", "true").stdout.strip()
        if placed in nodes[2].container_ids():
            break
    else:
        pytest.fail("a created node never took a container")
