"""Volumes through the proxy with the real docker CLI, checked on the nodes themselves; and
the cluster's volume calls as a library."""

from __future__ import annotations

import json
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from swarmproxy.cluster import Cluster
from swarmproxy.local_nodes import DockerNode
from tests.rig.library import library_cluster
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def unique(name: str) -> str:
    # Each test runs on two proxies, and a failed one may leave its volumes behind.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def volumes_on(node: DockerNode) -> set[str]:
    return set(node.docker("volume", "ls", "-q").stdout.split())


def holders(nodes: list[DockerNode], name: str) -> list[str]:
    return [n.name for n in nodes if name in volumes_on(n)]


def indexed(proxy: Proxy, name: str) -> set[str] | None:
    """The node addresses a proxy on Redis has indexed for a volume; None on the embedded
    storage, which only the proxy's own process can read."""
    url = tomllib.loads((proxy.workdir / "config.toml").read_text())["storage"]["url"]
    if not url.startswith("redis://"):
        return None
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return set(client.smembers(f"{proxy.prefix}volume-nodes:{name}"))  # type: ignore[arg-type]


def node_named(proxy: Proxy, name: str) -> str:
    """The node a volume's inspect names (the CLI shows only the daemon's fields)."""
    status, body = proxy.json("GET", f"/volumes/{name}")
    assert status == 200, body
    assert body["Name"] == name
    return str(body["Node"]["Name"])


@pytest.fixture(autouse=True)
def no_new_volumes(nodes: list[DockerNode]) -> Iterator[None]:
    """Every volume a test leaves on a node is removed once the containers are (autouse:
    set up before `cluster`, so torn down after it)."""
    before = {n.name: volumes_on(n) for n in nodes}
    yield
    for node in nodes:
        left = sorted(volumes_on(node) - before[node.name])
        if left:
            node.docker("volume", "rm", "-f", *left)


def test_create_lands_on_one_node_and_is_recorded(cluster: Proxy, nodes: list[DockerNode]) -> None:
    name = unique("v1")
    assert cluster.docker("volume", "create", name).stdout.strip() == name
    (holder,) = holders(nodes, name)
    address = next(n.tcp_address for n in nodes if n.name == holder)
    assert indexed(cluster, name) in ({address}, None)

    # Created again, it is the same volume: the daemon's answer for a name it holds.
    cluster.docker("volume", "create", name)
    cluster.docker("volume", "create", name)
    assert holders(nodes, name) == [holder]
    assert json.loads(cluster.docker("volume", "inspect", name).stdout)[0]["Name"] == name
    assert node_named(cluster, name) == holder

    # Anonymous: recorded under the name the daemon chose.
    anonymous = cluster.docker("volume", "create").stdout.strip()
    assert len(anonymous) == 64
    (anonymous_holder,) = holders(nodes, anonymous)
    assert indexed(cluster, anonymous) in (
        {next(n.tcp_address for n in nodes if n.name == anonymous_holder)},
        None,
    )
    cluster.docker("volume", "rm", name, anonymous)
    assert holders(nodes, name) == holders(nodes, anonymous) == []
    assert indexed(cluster, name) in (set(), None)


def test_creates_are_spread_by_the_scheduler(cluster: Proxy, nodes: list[DockerNode]) -> None:
    names = [unique("spread") for _ in range(6)]
    for name in names:
        cluster.docker("volume", "create", name)
    placed = [holders(nodes, name) for name in names]
    assert all(len(on) == 1 for on in placed)
    assert {on[0] for on in placed} == {"node-1", "node-2", "node-3"}
    cluster.docker("volume", "rm", *names)


def test_ls_lists_the_volumes_of_every_node(cluster: Proxy, nodes: list[DockerNode]) -> None:
    prefix = unique("ls")
    own = {node.name: f"{prefix}-{node.name}" for node in nodes}
    for node in nodes:
        node.docker("volume", "create", "--label", "team=a", own[node.name])
    shared = f"{prefix}-shared"
    nodes[0].docker("volume", "create", shared)
    nodes[2].docker("volume", "create", shared)

    listed = cluster.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(n for n in listed if n.startswith(prefix)) == sorted(
        [*own.values(), shared, shared]
    )
    # The filters reach every node.
    filtered = cluster.docker("volume", "ls", "-q", "--filter", "label=team=a").stdout.split()
    assert sorted(filtered) == sorted(own.values())

    status, body = cluster.json("GET", "/volumes")
    assert status == 200
    where = sorted((v["Name"], v["Node"]["Name"]) for v in body["Volumes"])
    assert [w for w in where if w[0].startswith(prefix)] == sorted(
        [*((name, node) for node, name in own.items()), (shared, "node-1"), (shared, "node-3")]
    )
    assert body["Warnings"] is None
    cluster.docker("volume", "rm", shared, *own.values())
    assert not any(name.startswith(prefix) for node in nodes for name in volumes_on(node))


def test_inspect_and_rm_reach_the_node_that_holds_it(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    # Made behind the proxy's back, as `docker run -v name:/x` on a node makes one.
    name = unique("behind")
    nodes[2].docker("run", "--rm", "-v", f"{name}:/x", "busybox", "touch", "/x/made")
    inspected = json.loads(cluster.docker("volume", "inspect", name).stdout)
    assert inspected[0]["Mountpoint"].startswith(str(nodes[2].workdir))
    assert node_named(cluster, name) == "node-3"
    # Learned on that miss: the index now sends it straight to node-3.
    assert indexed(cluster, name) in ({nodes[2].tcp_address}, None)

    # One made by a container created through the proxy is found where the container is.
    ran = cluster.docker("run", "-d", "-v", f"{name}-run:/x", "busybox", "sleep", "300")
    container_node = next(n for n in nodes if ran.stdout.strip() in n.container_ids())
    assert node_named(cluster, f"{name}-run") == container_node.name

    cluster.docker("volume", "rm", name)
    assert holders(nodes, name) == []
    missing = cluster.docker("volume", "inspect", name, check=False)
    assert missing.returncode == 1
    assert "no such volume" in missing.stderr
    status, body = cluster.json("GET", f"/volumes/{name}")
    assert (status, body) == (404, {"message": f"get {name}: no such volume"})
    status, body = cluster.json("DELETE", f"/volumes/{name}")
    assert (status, body) == (404, {"message": f"get {name}: no such volume"})


def test_rm_of_a_volume_in_use_is_the_daemons_409_naming_the_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    name = unique("busy")
    cluster.docker("volume", "create", name)
    (holder,) = [n for n in nodes if name in volumes_on(n)]
    user = holder.docker("run", "-d", "-v", f"{name}:/x", "busybox", "sleep", "300")
    container_id = user.stdout.strip()

    refused = cluster.docker("volume", "rm", name, check=False)
    assert refused.returncode == 1
    assert f"remove {name}: volume is in use - [{container_id}] (on {holder.name})" in (
        refused.stderr
    )
    status, body = cluster.json("DELETE", f"/volumes/{name}")
    assert status == 409
    assert body == {
        "message": f"remove {name}: volume is in use - [{container_id}] (on {holder.name})"
    }
    assert holders(nodes, name) == [holder.name]

    holder.docker("rm", "-f", container_id)
    cluster.docker("volume", "rm", name)
    assert holders(nodes, name) == []


def test_rm_says_what_the_other_nodes_removed(cluster: Proxy, nodes: list[DockerNode]) -> None:
    name = unique("twice")
    nodes[0].docker("volume", "create", name)
    nodes[1].docker("volume", "create", name)
    user = nodes[1].docker("run", "-d", "-v", f"{name}:/x", "busybox", "sleep", "300")

    status, body = cluster.json("DELETE", f"/volumes/{name}")
    assert status == 409
    assert body["message"] == (
        f"remove {name}: volume is in use - [{user.stdout.strip()}] (on node-2); "
        f"done on node-1: removed {name}"
    )
    assert holders(nodes, name) == ["node-2"]


def test_prune_on_every_node(cluster: Proxy, nodes: list[DockerNode]) -> None:
    prefix = unique("prune")
    unused = [f"{prefix}-{i}" for i in range(3)]
    for name in unused:
        cluster.docker("volume", "create", name)
    nodes[1].docker("volume", "create", f"{prefix}-behind")
    kept = f"{prefix}-kept"
    nodes[2].docker("run", "-d", "-v", f"{kept}:/x", "busybox", "sleep", "300")

    status, body = cluster.json("POST", "/volumes/prune")
    assert status == 200
    assert sorted(n for n in body["VolumesDeleted"] if n.startswith(prefix)) == sorted(
        [*unused, f"{prefix}-behind"]
    )
    assert isinstance(body["SpaceReclaimed"], int)
    assert [name for node in nodes for name in volumes_on(node) if name.startswith(prefix)] == [
        kept
    ]
    for name in unused:
        assert indexed(cluster, name) in (set(), None)
        assert cluster.docker("volume", "inspect", name, check=False).returncode == 1

    pruned = cluster.docker("volume", "prune", "-f")
    assert kept not in pruned.stdout


# --- as a library ----------------------------------------------------------------


@pytest.fixture
async def library(nodes: list[DockerNode]) -> AsyncIterator[Cluster]:
    try:
        async with library_cluster(nodes) as cluster:
            yield cluster
    finally:
        for node in nodes:
            node.remove_all_containers()


async def test_volume_nodes_learns_a_volume_made_on_a_node(
    library: Cluster, nodes: list[DockerNode]
) -> None:
    name = unique("lib")
    assert await library.volume_nodes(name) == []
    nodes[1].docker("run", "--rm", "-v", f"{name}:/x", "busybox", "true")
    assert [n.name for n in await library.volume_nodes(name)] == ["node-2"]
    assert await library.storage.retrieve_volume(name) == {nodes[1].tcp_address}

    created = await library.create_volume({"Name": name, "Labels": {"a": "b"}})
    assert created.node.name == "node-2"  # the existing one, not a second volume
    assert created.volume["Name"] == name
    await library.remove_volume(name)
    assert await library.volume_nodes(name) == []
    assert holders(nodes, name) == []


async def test_dry_mode_places_and_records_without_calling_a_node(
    library: Cluster, nodes: list[DockerNode]
) -> None:
    plan = await library.dry_mode()
    created = await plan.create_volume({"Name": "planned"})
    assert await plan.volume_nodes("planned") == [
        n for n in plan.nodes if n.name == created.node.name
    ]
    anonymous = await plan.create_volume({})
    assert len(anonymous.volume["Name"]) == 64
    await plan.stop_dry_mode()
    assert holders(nodes, "planned") == []
    assert await library.storage.retrieve_volume("planned") == set()
