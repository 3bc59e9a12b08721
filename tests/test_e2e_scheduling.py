"""Placement through the proxy with the docker CLI, on real nodes labelled by zone: classic
Swarm's constraints and affinities, dependencies, strategies, published ports, images that
follow containers, and the placement dry-run."""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode, start_nodes, stop_nodes
from tests.rig.bridges import bridges
from tests.rig.images import unique_image
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ZONES = {"node-1": "a", "node-2": "b", "node-3": "c"}


@pytest.fixture
def zoned(cluster: Proxy) -> Iterator[Proxy]:
    """The proxy, its nodes labelled zone=a, b and c."""
    for name, zone in ZONES.items():
        cluster.node_cli("update", name, "--label", f"zone={zone}")
    try:
        yield cluster
    finally:
        for name in ZONES:
            cluster.node_cli("update", name, "--label-rm", "zone")


def node_of(proxy: Proxy, container: str) -> str:
    return str(json.loads(proxy.docker("inspect", container).stdout)[0]["Node"]["Name"])


def run(proxy: Proxy, *args: str) -> str:
    return proxy.docker("run", "-d", *args, "busybox", "sleep", "300").stdout.strip()


def test_constraints_place_by_label_and_by_name(zoned: Proxy) -> None:
    on_b = run(zoned, "-e", "constraint:zone==b", "-e", "KEEP=1")
    assert node_of(zoned, on_b) == "node-2"
    inspected = json.loads(zoned.docker("inspect", on_b).stdout)[0]
    # The expression is taken out of the environment and kept as classic Swarm's label.
    assert "KEEP=1" in inspected["Config"]["Env"]
    assert not [e for e in inspected["Config"]["Env"] if e.startswith("constraint:")]
    assert inspected["Config"]["Labels"]["com.docker.swarm.constraints"] == '["zone==b"]'

    for _ in range(2):
        assert node_of(zoned, run(zoned, "-e", "constraint:node==node-3")) == "node-3"
    # (Two `-e` with one key before the `=`, `constraint:zone!`, would be one to the CLI.)
    both = run(zoned, "-e", "constraint:zone!=a", "-e", "constraint:node!=node-3")
    assert node_of(zoned, both) == "node-2"
    labelled = run(zoned, "--label", 'com.docker.swarm.constraints=["zone==a"]')
    assert node_of(zoned, labelled) == "node-1"

    refused = zoned.docker("run", "-d", "-e", "constraint:zone==z", "busybox", "true", check=False)
    assert refused.returncode != 0
    assert "constraint excluded node-1 (zone==z: zone is a)" in refused.stderr
    assert "node-3 (zone==z: zone is c)" in refused.stderr
    soft = run(zoned, "-e", "constraint:zone==~z")
    assert node_of(zoned, soft) in ZONES
    bad = zoned.docker("run", "-d", "-e", "constraint:zone", "busybox", "true", check=False)
    assert bad.returncode != 0 and "invalid constraint" in bad.stderr


def test_affinities_and_dependencies_follow_their_container(zoned: Proxy) -> None:
    web = run(zoned, "--name", "web", "-e", "constraint:zone==c")
    assert node_of(zoned, web) == "node-3"
    for args in (
        ("-e", "affinity:container==web"),
        ("-e", "affinity:container==/w.b/"),
        ("--volumes-from", "web"),
        ("--link", "web:w"),
        ("--net", "container:web"),
        ("--pid", "container:web"),
    ):
        assert node_of(zoned, run(zoned, *args)) == "node-3", args
    away = run(zoned, "-e", "affinity:container!=web", "-e", "constraint:zone!=a")
    assert node_of(zoned, away) == "node-2"

    db = run(zoned, "--name", "db", "-e", "constraint:zone==a")
    conflict = zoned.docker(
        "run", "-d", "--volumes-from", "web", "--volumes-from", "db", "busybox", "true", check=False
    )
    assert conflict.returncode != 0
    assert "conflicting dependencies" in conflict.stderr
    assert node_of(zoned, db) == "node-1"


def test_a_container_follows_its_image_to_another_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    """No registry: the image, loaded straight on node-1, is copied to node-2."""
    tar, image_id = unique_image("only-on-one:v1", runnable=True)
    nodes[0].docker("load", input=tar)
    try:
        ran = cluster.docker(
            "run",
            "--name",
            "follower",
            "-e",
            "constraint:node==node-2",
            "only-on-one:v1",
            "echo",
            "copied",
        )
        assert ran.stdout == "copied\n"
        assert node_of(cluster, "follower") == "node-2"
        held = nodes[1].docker("image", "inspect", "only-on-one:v1", "--format", "{{.Id}}")
        assert held.stdout.strip() == image_id
        assert cluster.docker("start", "-a", "follower").stdout == "copied\n"
    finally:
        cluster.docker("rm", "-f", "follower", check=False)
        for node in nodes:
            node.docker("rmi", "-f", "only-on-one:v1", check=False)


@pytest.mark.parametrize("strategy", ["spread", "binpack", "random"])
def test_strategies(
    strategy: str, nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Proxy.start(
        tmp_path_factory.mktemp(strategy),
        nodes,
        extra_toml=f'[scheduler]\nstrategy = "{strategy}"\n',
    )
    try:
        runs = 30 if strategy != "binpack" else 6
        placed = Counter(node_of(proxy, run(proxy)) for _ in range(runs))
        if strategy == "spread":
            assert sorted(placed) == ["node-1", "node-2", "node-3"]
            assert max(placed.values()) - min(placed.values()) <= 1
        elif strategy == "binpack":
            assert len(placed) == 1
        else:
            assert sorted(placed) == ["node-1", "node-2", "node-3"]
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()


@pytest.fixture(scope="module")
def bridged() -> Iterator[list[DockerNode]]:
    """Three nodes with a bridge each, so that containers can publish ports."""
    with bridges(3) as names:
        started = start_nodes(3, bridge=names)
        try:
            yield started
        finally:
            stop_nodes(started)


def test_a_published_port_goes_where_it_is_free(
    bridged: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    """A node where a container publishes the port is left out. (These nodes share one
    host, whose port 18080 the first container's daemon holds: the second container is
    created where the port is free, not started.)"""
    proxy = Proxy.start(tmp_path, bridged)
    try:
        first = run(proxy, "-p", "18080:80")
        taken = node_of(proxy, first)
        for _ in range(3):
            second = proxy.docker("create", "-p", "18080:80", "busybox", "true").stdout.strip()
            assert node_of(proxy, second) != taken
        bindings = {"80/tcp": [{"HostIp": "", "HostPort": "18080"}]}
        body = {"Image": "busybox", "HostConfig": {"PortBindings": bindings}}
        status, answer = proxy.admin("POST", "/swarmproxy/v1/schedule", body)
        verdicts = {n["Name"]: n for n in answer["Nodes"]}
        assert status == 200 and verdicts[taken]["ExcludedBy"] == "port"
        assert "18080" in verdicts[taken]["Reason"]
        # The same port on another protocol fits anywhere.
        udp = {"80/udp": [{"HostIp": "", "HostPort": "18080"}]}
        body["HostConfig"] = {"PortBindings": udp}
        _, answer = proxy.admin("POST", "/swarmproxy/v1/schedule", body)
        assert all(n["Passed"] for n in answer["Nodes"])
    finally:
        proxy.stop()
        for node in bridged:
            node.remove_all_containers()


def test_the_placement_dry_run_explains_and_creates_nothing(
    zoned: Proxy, nodes: list[DockerNode]
) -> None:
    before = [n.container_ids() for n in nodes]
    body = {"Image": "busybox", "Env": ["constraint:zone!=a"]}
    status, answer = zoned.admin("POST", "/swarmproxy/v1/schedule", body)
    assert status == 200
    assert answer["Node"]["Name"] in ("node-2", "node-3")
    verdicts = {n["Name"]: n for n in answer["Nodes"]}
    assert verdicts["node-1"]["ExcludedBy"] == "constraint"
    assert verdicts["node-1"]["Reason"] == "zone!=a: zone is a"
    assert verdicts["node-2"]["Passed"] and verdicts["node-2"]["Score"] is not None
    # Asked twice, the same answer: the rotation did not move.
    assert zoned.admin("POST", "/swarmproxy/v1/schedule", body)[1]["Node"] == answer["Node"]

    shown = zoned.admin_cli("schedule", "--image", "busybox", "-e", "constraint:zone==a")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["NODE", "RESULT", "SCORE", "WHY"]
    assert any(line.startswith("node-1") and "chosen" in line for line in lines)
    assert any(line.startswith("node-2") and "excluded by constraint" in line for line in lines)
    assert lines[-1] == "strategy round-robin: node-1"
    nowhere = zoned.admin_cli(
        "schedule", "--image", "busybox", "-e", "constraint:zone==z", check=False
    )
    assert nowhere.returncode == 1
    assert nowhere.stdout.splitlines()[-1] == "strategy round-robin: no node can take it"
    assert [n.container_ids() for n in nodes] == before


def test_a_named_volume_pins_its_users(cluster: Proxy, nodes: list[DockerNode]) -> None:
    cluster.docker("volume", "create", "pinned-data")
    try:
        (holder,) = [
            n.name for n in nodes if "pinned-data" in n.docker("volume", "ls", "-q").stdout.split()
        ]
        for _ in range(3):
            assert node_of(cluster, run(cluster, "-v", "pinned-data:/data")) == holder
        mounted = run(cluster, "--mount", "type=volume,source=pinned-data,target=/data")
        assert node_of(cluster, mounted) == holder
    finally:
        ids = cluster.docker("ps", "-aq").stdout.split()
        if ids:
            cluster.docker("rm", "-f", *ids)
        cluster.docker("volume", "rm", "pinned-data")
