"""swarmproxy.scheduler.filters: classic Swarm's placement filters, each judging real Nodes
against a simulated cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from swarmproxy.cluster.node import DISABLED, PENDING, Node
from swarmproxy.errors import BadRequest, Conflict
from swarmproxy.scheduler.base import SchedulingRequest
from swarmproxy.scheduler.filters import (
    FILTERS,
    AffinityFilter,
    ConstraintFilter,
    DependencyFilter,
    Filter,
    HealthFilter,
    PortFilter,
    make_filters,
)

Container = dict[str, Any]


class SimulatedCluster:
    """A simulation of the cluster's PlacementContext: the containers, images and volumes
    of each node are what the test says, no daemon is asked, and every question is noted
    in `asked`."""

    def __init__(self) -> None:
        self.containers: dict[Node, list[Container]] = {}
        self.images: dict[str, list[Node]] = {}
        self.volumes: dict[str, list[Node]] = {}
        self.asked: list[str] = []

    def run(self, node: Node, *containers: Container) -> None:
        self.containers.setdefault(node, []).extend(containers)

    async def container_node(self, ref: str) -> Node | None:
        self.asked.append(f"container {ref}")
        for node, containers in self.containers.items():
            for container in containers:
                if f"/{ref}" in container["Names"] or container["Id"].startswith(ref):
                    return node
        return None

    async def containers_on(self, node: Node) -> list[Container]:
        self.asked.append(f"containers on {node.name}")
        return self.containers.get(node, [])

    async def image_nodes(self, ref: str) -> list[Node]:
        self.asked.append(f"image {ref}")
        return self.images.get(ref, [])

    async def volume_nodes(self, name: str) -> list[Node]:
        self.asked.append(f"volume {name}")
        return self.volumes.get(name, [])


def container(
    name: str,
    container_id: str = "",
    image: str = "busybox:latest",
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    also_named: tuple[str, ...] = (),
) -> Container:
    """A container as `GET /containers/json?all=1` lists it."""
    return {
        "Id": container_id or (name.encode().hex() * 8)[:64],
        "Names": [f"/{name}", *also_named],
        "Image": image,
        "Labels": labels or {},
        "State": "running",
        "Ports": ports or [],
    }


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    """Three ready nodes: zone a, and two in zone b (node-3 without a disk label)."""
    made = [
        Node("node-1", "tcp://10.0.0.1:2375", {"zone": "a", "disk": "ssd"}),
        Node("node-2", "tcp://10.0.0.2:2375", {"zone": "b", "disk": "hdd"}),
        Node("node-3", "tcp://10.0.0.3:2375", {"zone": "b"}),
    ]
    for node in made:
        node.info.update(
            {"Driver": "overlay2", "KernelVersion": "6.1.0", "OperatingSystem": "Debian 12"}
        )
        node.health.record_success()
    made[2].info.update({"Driver": "btrfs", "OperatingSystem": "Ubuntu 24.04"})
    try:
        yield made
    finally:
        for node in made:
            await node.client.close()


@pytest.fixture
def cluster() -> SimulatedCluster:
    return SimulatedCluster()


async def excluded(
    flt: Filter,
    nodes: list[Node],
    cluster: SimulatedCluster,
    request: SchedulingRequest,
) -> dict[str, str]:
    """The filter's judgement, by node name."""
    judged = await flt.judge(nodes, request, cluster)
    return {node.name: reason for node, reason in judged.items()}


def test_default_filters_and_making_them_by_name() -> None:
    assert FILTERS == ("health", "constraint", "affinity", "port", "dependency")
    made = make_filters(FILTERS)
    assert [type(f) for f in made] == [
        HealthFilter,
        ConstraintFilter,
        AffinityFilter,
        PortFilter,
        DependencyFilter,
    ]
    assert [f.name for f in made] == list(FILTERS)
    assert [f.name for f in make_filters(["port", "health"])] == ["port", "health"]
    assert make_filters([]) == []


def test_unknown_filter_name() -> None:
    with pytest.raises(ValueError, match=r"unknown filter 'cpu' \(known: health, constraint"):
        make_filters(["health", "cpu"])


# health


async def test_health(nodes: list[Node], cluster: SimulatedCluster) -> None:
    """Not ready: unhealthy (the health says how), drained, or still being made."""
    assert await excluded(HealthFilter(), nodes, cluster, SchedulingRequest()) == {}
    nodes[0].health.record_failure("connection refused")
    nodes[0].health.disabled_until = time.time() + 60
    nodes[1].creation_status = DISABLED
    nodes[2].creation_status = PENDING
    judged = await excluded(HealthFilter(), nodes, cluster, SchedulingRequest())
    assert judged["node-1"].startswith("temporarily disabled until ")
    assert judged["node-1"].endswith("after 1 failures: connection refused")
    assert judged["node-2"] == "drained"
    assert judged["node-3"] == "pending"


async def test_health_of_a_node_never_seen(cluster: SimulatedCluster) -> None:
    node = Node("node-9", "tcp://10.0.0.9:2375")
    try:
        judged = await excluded(HealthFilter(), [node], cluster, SchedulingRequest())
    finally:
        await node.client.close()
    assert judged == {"node-9": "waiting"}


# constraint


async def constrained(
    nodes: list[Node], cluster: SimulatedCluster, *constraints: str
) -> dict[str, str]:
    request = SchedulingRequest(constraints=list(constraints))
    return await excluded(ConstraintFilter(), nodes, cluster, request)


async def test_constraint_labels(nodes: list[Node], cluster: SimulatedCluster) -> None:
    assert await constrained(nodes, cluster) == {}
    assert await constrained(nodes, cluster, "zone==b") == {"node-1": "zone==b: zone is a"}
    # Values match case-insensitively.
    assert await constrained(nodes, cluster, "zone==B") == {"node-1": "zone==B: zone is a"}
    assert await constrained(nodes, cluster, "zone==b", "disk==ssd") == {
        "node-1": "zone==b: zone is a",
        "node-2": "disk==ssd: disk is hdd",
        "node-3": "disk==ssd: no label disk",
    }
    assert cluster.asked == []


async def test_constraint_missing_label(nodes: list[Node], cluster: SimulatedCluster) -> None:
    """A node without the label fails `==` and passes `!=`."""
    assert await constrained(nodes, cluster, "disk==*") == {"node-3": "disk==*: no label disk"}
    assert await constrained(nodes, cluster, "disk!=ssd") == {"node-1": "disk!=ssd: disk is ssd"}
    assert await constrained(nodes, cluster, "rack!=r1") == {}


async def test_constraint_built_ins(nodes: list[Node], cluster: SimulatedCluster) -> None:
    assert await constrained(nodes, cluster, "node!=node-2") == {
        "node-2": "node!=node-2: node is node-2"
    }
    assert await constrained(nodes, cluster, "storagedriver==overlay*") == {
        "node-3": "storagedriver==overlay*: storagedriver is btrfs"
    }
    assert await constrained(nodes, cluster, "operatingsystem==/ubuntu/") == {
        "node-1": "operatingsystem==/ubuntu/: operatingsystem is Debian 12",
        "node-2": "operatingsystem==/ubuntu/: operatingsystem is Debian 12",
    }
    del nodes[0].info["KernelVersion"]
    assert await constrained(nodes, cluster, "kernelversion==6.*") == {
        "node-1": "kernelversion==6.*: unknown kernelversion"
    }


async def test_constraint_globs_and_regex(nodes: list[Node], cluster: SimulatedCluster) -> None:
    assert await constrained(nodes, cluster, "node==node-[12]") == {
        "node-3": "node==node-[12]: node is node-3"
    }
    assert await constrained(nodes, cluster, "node!=/-[23]$/") == {
        "node-2": "node!=/-[23]$/: node is node-2",
        "node-3": "node!=/-[23]$/: node is node-3",
    }


async def test_constraint_soft(nodes: list[Node], cluster: SimulatedCluster) -> None:
    """`~`: applied when some node satisfies it, dropped when none does."""
    assert await constrained(nodes, cluster, "disk==~ssd") == {
        "node-2": "disk==~ssd: disk is hdd",
        "node-3": "disk==~ssd: no label disk",
    }
    assert await constrained(nodes, cluster, "disk==~nvme") == {}
    assert await constrained(nodes, cluster, "zone!=~a", "zone==b", "disk==~ssd") == {
        "node-1": "zone==b: zone is a",
    }
    # A hard one that excludes everything is not softened.
    assert len(await constrained(nodes, cluster, "disk==nvme")) == 3


async def test_constraint_invalid(nodes: list[Node], cluster: SimulatedCluster) -> None:
    with pytest.raises(BadRequest, match="invalid constraint 'zone=b'"):
        await constrained(nodes, cluster, "zone=b")


# affinity


async def affine(nodes: list[Node], cluster: SimulatedCluster, *affinities: str) -> dict[str, str]:
    request = SchedulingRequest(affinities=list(affinities))
    return await excluded(AffinityFilter(), nodes, cluster, request)


@pytest.fixture
def busy(nodes: list[Node], cluster: SimulatedCluster) -> SimulatedCluster:
    """web-1 on node-1 (linked to by shop as its `db`), web-2 on node-2, a db on node-3."""
    node_1, node_2, node_3 = nodes
    cluster.run(
        node_1,
        container(
            "web-1", container_id="f00d" + "0" * 60, image="nginx:1.27", labels={"role": "front"}
        ),
        container("shop", also_named=("/shop/db",)),
    )
    cluster.run(node_2, container("web-2", image="nginx", labels={"role": "front"}))
    cluster.run(node_3, container("db", image="registry:5000/postgres:16", labels={"role": "db"}))
    return cluster


async def test_affinity_none(nodes: list[Node], busy: SimulatedCluster) -> None:
    """Without affinities, nothing is asked of the cluster."""
    assert await affine(nodes, busy) == {}
    assert busy.asked == []


async def test_affinity_container_by_name(nodes: list[Node], busy: SimulatedCluster) -> None:
    assert await affine(nodes, busy, "container==web-2") == {
        "node-1": "container==web-2: no container matches",
        "node-3": "container==web-2: no container matches",
    }
    assert await affine(nodes, busy, "container==WEB-*") == {
        "node-3": "container==WEB-*: no container matches"
    }
    assert await affine(nodes, busy, "container==/^(db|shop)$/") == {
        "node-2": "container==/^(db|shop)$/: no container matches"
    }


async def test_affinity_link_aliases_are_not_names(
    nodes: list[Node], busy: SimulatedCluster
) -> None:
    """A listing also names a container as each link to it (`/shop/db`): that is no name."""
    assert await affine(nodes, busy, "container==db") == {
        "node-1": "container==db: no container matches",
        "node-2": "container==db: no container matches",
    }


async def test_affinity_container_by_id(nodes: list[Node], busy: SimulatedCluster) -> None:
    """A full ID or an ID prefix; globs are for names only."""
    expected = {
        "node-2": "container==F00D: no container matches",
        "node-3": "container==F00D: no container matches",
    }
    assert await affine(nodes, busy, "container==F00D") == expected
    assert len(await affine(nodes, busy, "container==f00d*")) == 3


async def test_affinity_container_not(nodes: list[Node], busy: SimulatedCluster) -> None:
    assert await affine(nodes, busy, "container!=web-*") == {
        "node-1": "container!=web-*: container web-1 matches",
        "node-2": "container!=web-*: container web-2 matches",
    }


async def test_affinity_soft(nodes: list[Node], busy: SimulatedCluster) -> None:
    assert await affine(nodes, busy, "container==~db") == {
        "node-1": "container==~db: no container matches",
        "node-2": "container==~db: no container matches",
    }
    assert await affine(nodes, busy, "container==~cache") == {}
    assert await affine(nodes, busy, "container!=~*") == {}
    assert len(await affine(nodes, busy, "container==cache")) == 3


async def test_affinity_image_by_reference(nodes: list[Node], busy: SimulatedCluster) -> None:
    """A reference is looked up in the cluster's image index: a node holding the image
    counts even with no container of it."""
    busy.images["redis:7"] = [nodes[1], nodes[2]]
    assert await affine(nodes, busy, "image==redis:7") == {
        "node-1": "image==redis:7: no such image"
    }
    assert await affine(nodes, busy, "image!=redis:7") == {
        "node-2": "image!=redis:7: image is here",
        "node-3": "image!=redis:7: image is here",
    }
    assert await affine(nodes, busy, "image==~memcached") == {}
    assert busy.asked == ["image redis:7", "image redis:7", "image memcached"]


async def test_affinity_image_pattern(nodes: list[Node], busy: SimulatedCluster) -> None:
    """A glob or a regex is matched against the images of the node's containers, with and
    without their tag."""
    assert await affine(nodes, busy, "image==nginx:1.*") == {
        "node-2": "image==nginx:1.*: no container matches",
        "node-3": "image==nginx:1.*: no container matches",
    }
    assert await affine(nodes, busy, "image==*/postgres") == {
        "node-1": "image==*/postgres: no container matches",
        "node-2": "image==*/postgres: no container matches",
    }
    assert await affine(nodes, busy, "image!=/^nginx/") == {
        "node-1": "image!=/^nginx/: container web-1 matches",
        "node-2": "image!=/^nginx/: container web-2 matches",
    }


async def test_affinity_container_labels(nodes: list[Node], busy: SimulatedCluster) -> None:
    """Any other key is a container label."""
    assert await affine(nodes, busy, "role==db") == {
        "node-1": "role==db: no container matches",
        "node-2": "role==db: no container matches",
    }
    assert await affine(nodes, busy, "role!=front") == {
        "node-1": "role!=front: container web-1 matches",
        "node-2": "role!=front: container web-2 matches",
    }
    assert await affine(nodes, busy, "tier==~*") == {}
    assert await affine(nodes, busy, "tier!=*") == {}


async def test_affinity_invalid(nodes: list[Node], busy: SimulatedCluster) -> None:
    with pytest.raises(BadRequest, match="invalid affinity 'container'"):
        await affine(nodes, busy, "container")


# port


def published(port: int, public: int, ip: str = "0.0.0.0", kind: str = "tcp") -> dict[str, Any]:
    return {"IP": ip, "PrivatePort": port, "PublicPort": public, "Type": kind}


async def ported(
    nodes: list[Node], cluster: SimulatedCluster, bindings: dict[str, list[dict[str, str]]]
) -> dict[str, str]:
    request = SchedulingRequest(config={"HostConfig": {"PortBindings": bindings}})
    return await excluded(PortFilter(), nodes, cluster, request)


@pytest.fixture
def serving(nodes: list[Node], cluster: SimulatedCluster) -> SimulatedCluster:
    """node-1 publishes 8080/tcp on every address (as IPv4 and IPv6), node-2 53/udp on
    10.0.0.2, node-3 publishes nothing (its container exposes a port only)."""
    cluster.run(
        nodes[0],
        container("web", ports=[published(80, 8080), published(80, 8080, ip="::")]),
        container("old"),
    )
    cluster.run(nodes[1], container("dns", ports=[published(53, 53, "10.0.0.2", "udp")]))
    cluster.run(nodes[2], container("app", ports=[{"PrivatePort": 80, "Type": "tcp"}]))
    return cluster


async def test_port_taken(nodes: list[Node], serving: SimulatedCluster) -> None:
    bindings = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert await ported(nodes, serving, bindings) == {"node-1": "port 8080/tcp is taken by web"}
    # Any host IP overlaps a container's binding on every address.
    bindings = {"80": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert await ported(nodes, serving, bindings) == {
        "node-1": "port 127.0.0.1:8080/tcp is taken by web"
    }


async def test_port_protocol_and_address(nodes: list[Node], serving: SimulatedCluster) -> None:
    """Another protocol, or another specific address, is free."""
    assert await ported(nodes, serving, {"80/udp": [{"HostPort": "8080"}]}) == {}
    assert (
        await ported(nodes, serving, {"53/udp": [{"HostIp": "10.0.0.9", "HostPort": "53"}]}) == {}
    )
    assert await ported(nodes, serving, {"53/udp": [{"HostIp": "10.0.0.2", "HostPort": "53"}]}) == {
        "node-2": "port 10.0.0.2:53/udp is taken by dns"
    }
    assert await ported(nodes, serving, {"5353/udp": [{"HostIp": "::", "HostPort": "53"}]}) == {
        "node-2": "port [::]:53/udp is taken by dns"
    }


async def test_port_ephemeral(nodes: list[Node], serving: SimulatedCluster) -> None:
    """No host port (or 0): the daemon picks a free one, so nothing is excluded, and with
    nothing to judge nothing is asked."""
    bindings = {"80/tcp": [{"HostIp": "", "HostPort": ""}, {"HostPort": "0"}, {}]}
    assert await ported(nodes, serving, bindings) == {}
    assert await ported(nodes, serving, {}) == {}
    assert serving.asked == []


async def test_port_range(nodes: list[Node], serving: SimulatedCluster) -> None:
    """A host port range is out of reach only when every port of it is taken."""
    assert await ported(nodes, serving, {"80/tcp": [{"HostPort": "8080-8081"}]}) == {}
    assert await ported(nodes, serving, {"80/tcp": [{"HostPort": "8080-8080"}]}) == {
        "node-1": "port 8080/tcp is taken by web"
    }


async def test_port_any_binding_excludes(nodes: list[Node], serving: SimulatedCluster) -> None:
    bindings = {"80/tcp": [{"HostPort": "80"}], "53/udp": [{"HostPort": "53"}]}
    assert await ported(nodes, serving, bindings) == {"node-2": "port 53/udp is taken by dns"}
    assert await ported(nodes, serving, {"80/tcp": [{"HostPort": "http"}]}) == {}


# dependency


async def depending(
    nodes: list[Node], cluster: SimulatedCluster, host_config: dict[str, Any]
) -> dict[str, str]:
    request = SchedulingRequest(config={"Image": "busybox", "HostConfig": host_config})
    return await excluded(DependencyFilter(), nodes, cluster, request)


@pytest.fixture
def placed(nodes: list[Node], cluster: SimulatedCluster) -> SimulatedCluster:
    """db and data on node-1, cache on node-2; volume `shared` on node-1 and node-2,
    volume `logs` on node-3."""
    cluster.run(nodes[0], container("db"), container("data"))
    cluster.run(nodes[1], container("cache"))
    cluster.volumes["shared"] = [nodes[0], nodes[1]]
    cluster.volumes["logs"] = [nodes[2]]
    return cluster


@pytest.mark.parametrize(
    "host_config",
    [
        {"VolumesFrom": ["db:ro"]},
        {"VolumesFrom": ["db"]},
        {"Links": ["/db:/shop/database"]},
        {"Links": ["db:database"]},
        {"NetworkMode": "container:db"},
        {"PidMode": "container:db"},
        {"IpcMode": "container:db"},
    ],
)
async def test_dependency_on_a_container(
    nodes: list[Node], placed: SimulatedCluster, host_config: dict[str, Any]
) -> None:
    assert await depending(nodes, placed, host_config) == {
        "node-2": "container db is on node-1",
        "node-3": "container db is on node-1",
    }
    assert placed.asked == ["container db"]


async def test_dependency_on_named_volumes(nodes: list[Node], placed: SimulatedCluster) -> None:
    """`Binds` naming a volume and volume `Mounts` keep to the volume's nodes."""
    expected = {"node-3": "volume shared is on node-1 and node-2"}
    assert await depending(nodes, placed, {"Binds": ["shared:/srv:ro"]}) == expected
    mounts = [{"Type": "volume", "Source": "shared", "Target": "/srv"}]
    assert await depending(nodes, placed, {"Mounts": mounts}) == expected
    assert await depending(nodes, placed, {"Binds": ["shared:/srv"], "VolumesFrom": ["db"]}) == {
        "node-2": "container db is on node-1",
        "node-3": "container db is on node-1, volume shared is on node-1 and node-2",
    }


async def test_dependency_that_restricts_nothing(
    nodes: list[Node], placed: SimulatedCluster
) -> None:
    """Host paths, anonymous volumes, bind mounts, other modes, a volume no node has yet
    (the daemon makes it) and an unknown container (the daemon answers 404)."""
    host_config = {
        "Binds": ["/var/log:/logs", "/data", "new-volume:/new"],
        "Mounts": [
            {"Type": "bind", "Source": "/etc", "Target": "/etc"},
            {"Type": "volume", "Target": "/anonymous"},
        ],
        "NetworkMode": "bridge",
        "IpcMode": "shareable",
        "PidMode": "host",
        "Links": ["ghost:ghost"],
    }
    assert await depending(nodes, placed, host_config) == {}
    assert placed.asked == ["container ghost", "volume new-volume"]


async def test_dependencies_met_together(nodes: list[Node], placed: SimulatedCluster) -> None:
    host_config = {"VolumesFrom": ["db", "data:rw"], "Links": ["db:db"], "Binds": ["shared:/s"]}
    assert await depending(nodes, placed, host_config) == {
        "node-2": "container db is on node-1, container data is on node-1",
        "node-3": (
            "container db is on node-1, container data is on node-1, "
            "volume shared is on node-1 and node-2"
        ),
    }
    # Each dependency is looked up once.
    assert sorted(placed.asked) == ["container data", "container db", "volume shared"]


async def test_conflicting_dependencies(nodes: list[Node], placed: SimulatedCluster) -> None:
    with pytest.raises(Conflict) as raised:
        await depending(nodes, placed, {"VolumesFrom": ["db"], "NetworkMode": "container:cache"})
    assert raised.value.status == 409
    assert raised.value.message == (
        "conflicting dependencies: container db is on node-1, container cache is on node-2"
    )
    with pytest.raises(Conflict, match="container cache is on node-2, volume logs is on node-3"):
        await depending(nodes, placed, {"Links": ["cache:c"], "Binds": ["logs:/logs"]})


async def test_dependency_on_a_node_not_among_the_candidates(
    nodes: list[Node], placed: SimulatedCluster
) -> None:
    """The dependency's node was excluded before: every candidate is, with the reason."""
    judged = await depending(nodes[1:], placed, {"VolumesFrom": ["db"]})
    assert judged == {
        "node-2": "container db is on node-1",
        "node-3": "container db is on node-1",
    }
