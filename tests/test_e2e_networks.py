"""Networks through the proxy with the real docker CLI, checked on the nodes themselves.

The nodes run with `--bridge=none --iptables=false`: they have no default `bridge` network,
but user-defined bridge networks work (one Linux bridge per node and network, and the
daemon's embedded DNS), as every test here shows. Each node's network is its own bridge:
no test expects containers on two nodes to reach each other.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator

import pytest
from aiohttp import web

from swarmproxy.cluster import Cluster, Node
from swarmproxy.errors import DockerError
from swarmproxy.local_nodes import DockerNode
from swarmproxy.scheduler import make_scheduler
from swarmproxy.storage import MemoryStorage
from tests.rig.proxy import Proxy
from tests.rig.simulated import simulated_node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def unique(name: str) -> str:
    # Each test runs on two proxies, and a failed one may leave its networks behind.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def networks_on(node: DockerNode) -> dict[str, str]:
    """The node's networks: name to ID."""
    listed = node.docker("network", "ls", "--no-trunc", "--format", "{{.Name}} {{.ID}}")
    return dict(line.split() for line in listed.stdout.splitlines())


def holders(nodes: list[DockerNode], name: str) -> list[str]:
    return [n.name for n in nodes if name in networks_on(n)]


def node_of(nodes: list[DockerNode], container_id: str) -> DockerNode:
    (node,) = [n for n in nodes if container_id in n.container_ids()]
    return node


def sleepers(cluster: Proxy, network: str, prefix: str, count: int) -> list[str]:
    """The IDs of `count` containers run on `network`, named `prefix-0`, `prefix-1`, …"""
    return [
        cluster.docker(
            "run", "-d", "--network", network, "--name", f"{prefix}-{i}", "busybox", "sleep", "300"
        ).stdout.strip()
        for i in range(count)
    ]


def attached(node: DockerNode, container_id: str) -> set[str]:
    shown = node.docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container_id)
    return set(json.loads(shown.stdout))


@pytest.fixture(autouse=True)
def no_new_networks(nodes: list[DockerNode]) -> Iterator[None]:
    """Every network a test leaves on a node is removed once the containers are (autouse:
    set up before `cluster`, so torn down after it), and its bridge with it."""
    before = {n.name: set(networks_on(n)) for n in nodes}
    yield
    kept = [
        (node.name, name)
        for node in nodes
        for name in sorted(set(networks_on(node)) - before[node.name])
        if not removed(node, name)
    ]
    assert not kept, f"networks left behind: {kept}"


def removed(node: DockerNode, network: str) -> bool:
    """Remove a network from a node, with the endpoints its containers may have left: on
    these nodes (`--bridge=none`), a container started with no network of its own (its
    `bridge` does not exist) and later connected to one leaves its endpoint behind when it
    is removed, until forcibly disconnected (dockerd 20.10)."""
    shown = node.docker(
        "network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", network
    )
    for container in shown.stdout.split():
        node.docker("network", "disconnect", "-f", network, container, check=False)
    return node.docker("network", "rm", network, check=False).returncode == 0


def test_create_makes_the_network_on_every_node(cluster: Proxy, nodes: list[DockerNode]) -> None:
    name = unique("n1")
    answered = cluster.docker("network", "create", name).stdout.strip()
    ids = {node.name: networks_on(node).get(name) for node in nodes}
    assert all(ids.values())
    assert len(set(ids.values())) == 3  # one network per node, each with its own ID
    assert answered == ids["node-1"]  # the first node's, in the cluster's order

    drivers = {n.docker("network", "inspect", "-f", "{{.Driver}}", name).stdout for n in nodes}
    assert drivers == {"bridge\n"}
    again = cluster.docker("network", "create", name, check=False)
    assert again.returncode == 1
    assert f"network with name {name} already exists" in again.stderr
    assert {node.name: networks_on(node).get(name) for node in nodes} == ids
    cluster.docker("network", "rm", name)


def test_ls_has_one_entry_per_name_with_its_nodes(cluster: Proxy, nodes: list[DockerNode]) -> None:
    name = unique("n1")
    cluster.docker("network", "create", "--label", "team=a", name)
    behind = unique("behind")
    nodes[1].docker("network", "create", behind)

    listed = cluster.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert len(listed) == len(set(listed))
    assert {name, behind, "host", "none"} <= set(listed)
    assert "bridge" not in listed  # the nodes run with --bridge=none
    shown = cluster.docker("network", "ls", "--no-trunc", "-q", "--filter", "label=team=a")
    assert shown.stdout.split() == [networks_on(nodes[0])[name]]

    status, body = cluster.json("GET", "/networks")
    assert status == 200
    nodes_of = {network["Name"]: network["Nodes"] for network in body}
    assert nodes_of[name] == nodes_of["host"] == nodes_of["none"] == ["node-1", "node-2", "node-3"]
    assert nodes_of[behind] == ["node-2"]
    cluster.docker("network", "rm", name, behind)
    assert holders(nodes, name) == holders(nodes, behind) == []


def test_containers_on_the_network_work_on_every_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    name = unique("n1")
    cluster.docker("network", "create", name)
    run = sleepers(cluster, name, name, 6)
    on: dict[str, list[int]] = {}
    for i, container_id in enumerate(run):
        on.setdefault(node_of(nodes, container_id).name, []).append(i)
    assert sorted(on) == ["node-1", "node-2", "node-3"]

    for node in nodes:
        subnet = node.docker(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", name
        ).stdout.strip()
        first, *others = on[node.name]
        shown = cluster.docker("exec", f"{name}-{first}", "ip", "-4", "-o", "addr", "show", "eth0")
        assert ipaddress.ip_interface(shown.stdout.split()[3]) in ipaddress.ip_network(subnet)
        # The daemon's embedded DNS and the bridge: by name, between the node's containers.
        for other in others:
            ping = cluster.docker(
                "exec", f"{name}-{first}", "ping", "-c1", "-W2", f"{name}-{other}"
            )
            assert "1 packets received" in ping.stdout

    inspected = cluster.json("GET", f"/networks/{name}")[1]
    assert sorted(inspected["Containers"]) == sorted(run)
    assert inspected["Nodes"] == ["node-1", "node-2", "node-3"]
    # The CLI's view of it is the daemon's, with every node's containers.
    shown = json.loads(cluster.docker("network", "inspect", name).stdout)
    assert sorted(shown[0]["Containers"]) == sorted(run)

    status, body = cluster.json("DELETE", f"/networks/{name}")
    assert status == 403
    for node in nodes:
        assert f"{networks_on(node)[name]} has active endpoints (on {node.name})" in body["message"]
    assert holders(nodes, name) == ["node-1", "node-2", "node-3"]


def test_inspect_by_any_nodes_id_or_prefix(cluster: Proxy, nodes: list[DockerNode]) -> None:
    name = unique("n1")
    cluster.docker("network", "create", name)
    for node in nodes:
        own_id = networks_on(node)[name]
        for ref in (own_id, own_id[:12]):
            shown = cluster.docker("network", "inspect", "-f", "{{.Name}} {{.Id}}", ref)
            # Answered by the node whose ID it is.
            assert shown.stdout.split() == [name, own_id]
    missing = cluster.docker("network", "inspect", "nope-nope", check=False)
    assert missing.returncode == 1
    assert "network nope-nope not found" in missing.stderr
    assert cluster.json("GET", "/networks/nope-nope") == (
        404,
        {"message": "network nope-nope not found"},
    )
    cluster.docker("network", "rm", networks_on(nodes[2])[name][:12])
    assert holders(nodes, name) == []


def test_rm_refusals_are_the_daemons(cluster: Proxy, nodes: list[DockerNode]) -> None:
    assert cluster.json("DELETE", "/networks/host") == (
        403,
        {"message": "host is a pre-defined network and cannot be removed"},
    )
    assert cluster.json("DELETE", "/networks/nope-nope") == (
        404,
        {"message": "network nope-nope not found"},
    )

    name = unique("n1")
    cluster.docker("network", "create", name)
    user = nodes[1].docker("run", "-d", "--network", name, "busybox", "sleep", "300")
    status, body = cluster.json("DELETE", f"/networks/{name}")
    assert status == 403
    network_id = networks_on(nodes[1])[name]
    assert body["message"] == (
        f"error while removing network: network {name} id {network_id} has active endpoints"
        f" (on node-2); done on node-1, node-3: removed {name}"
    )
    assert holders(nodes, name) == ["node-2"]
    nodes[1].docker("rm", "-f", user.stdout.strip())
    cluster.docker("network", "rm", name)
    assert holders(nodes, name) == []


def test_connect_and_disconnect_go_to_the_containers_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    name, base = unique("n1"), unique("base")
    cluster.docker("network", "create", name)
    # On a network of their own: see `removed` for what comes of a container without one.
    cluster.docker("network", "create", base)
    ids = sleepers(cluster, base, name, 3)
    for i, container_id in enumerate(ids):
        node = node_of(nodes, container_id)
        # By name, and by the ID another node gives the network.
        elsewhere = next(n for n in nodes if n is not node)
        for ref in (name, networks_on(elsewhere)[name]):
            cluster.docker("network", "connect", ref, f"{name}-{i}")
            assert name in attached(node, container_id)
            cluster.docker("network", "disconnect", ref, container_id[:12])
            assert name not in attached(node, container_id)

    cluster.docker("network", "connect", name, ids[0])
    twice = cluster.docker("network", "connect", name, ids[0], check=False)
    assert twice.returncode == 1
    assert f"endpoint with name {name}-0 already exists in network {name}" in twice.stderr
    nobody = cluster.docker("network", "connect", name, "nobody-here", check=False)
    assert "No such container: nobody-here" in nobody.stderr
    nowhere = cluster.docker("network", "connect", "nope-nope", ids[1], check=False)
    assert "network nope-nope not found" in nowhere.stderr
    status, body = cluster.json("POST", f"/networks/{name}/connect", {})
    assert status == 400, body
    status, body = cluster.json("POST", f"/networks/{name}/disconnect", b"{not json")
    assert status == 400, body


def test_a_network_only_some_nodes_can_make_is_made_on_none(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    name = unique("clash")
    own_id = nodes[1].docker("network", "create", name).stdout.strip()

    refused = cluster.docker("network", "create", name, check=False)
    assert refused.returncode == 1
    assert (
        f"network with name {name} already exists (on node-2); removed again from node-1, node-3"
    ) in refused.stderr
    assert {node.name: networks_on(node).get(name) for node in nodes} == {
        "node-1": None,
        "node-2": own_id,
        "node-3": None,
    }
    cluster.docker("network", "rm", name)
    assert holders(nodes, name) == []


def test_prune_on_every_node(cluster: Proxy, nodes: list[DockerNode]) -> None:
    unused, used = unique("unused"), unique("used")
    cluster.docker("network", "create", unused)
    cluster.docker("network", "create", used)
    nodes[0].docker("run", "-d", "--network", used, "busybox", "sleep", "300")

    status, body = cluster.json("POST", "/networks/prune")
    assert status == 200
    assert unused in body["NetworksDeleted"]
    assert body["NetworksDeleted"].count(unused) == 1
    assert holders(nodes, unused) == []
    # Each node judges its own: the network stays only where a container uses it.
    assert holders(nodes, used) == ["node-1"]
    assert cluster.json("POST", "/networks/prune") == (200, {"NetworksDeleted": None})


# --- as a library ----------------------------------------------------------------


async def test_a_node_failing_the_create_leaves_the_network_on_none(
    nodes: list[DockerNode],
) -> None:
    """The three real nodes and a SIMULATED fourth whose connection breaks as it is asked to
    create the network: the real nodes remove theirs again."""

    async def breaking(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    name = unique("undone")
    async with simulated_node("node-4", breaking) as broken:
        members = [*(Node(n.name, n.tcp_address) for n in nodes), broken]
        for member in members:
            member.health.record_success()
        cluster = Cluster(members, MemoryStorage(), make_scheduler("round-robin"))
        try:
            with pytest.raises(DockerError) as failed:
                await cluster.create_network({"Name": name, "Labels": {"a": "b"}})
        finally:
            await cluster.close()
    assert failed.value.status == 502
    assert failed.value.message.startswith(f"node node-4 ({broken.address}) is unavailable: ")
    assert failed.value.message.endswith(
        "(in POST /networks/create) (on node-4); removed again from node-1, node-2, node-3"
    )
    assert holders(nodes, name) == []
