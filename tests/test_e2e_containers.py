"""Containers through the proxy with the real docker CLI, checked on the nodes themselves."""

from __future__ import annotations

import json

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def node_of(nodes: list[DockerNode], container_id: str) -> DockerNode:
    holders = [n for n in nodes if container_id in n.container_ids()]
    assert len(holders) == 1, f"{container_id} is on {[n.name for n in holders]}"
    return holders[0]


def all_ids(nodes: list[DockerNode], all: bool = True) -> set[str]:
    return set().union(*(n.container_ids(all=all) for n in nodes))


def shortest_unique_prefix(container_id: str, others: set[str]) -> str:
    for length in range(1, len(container_id)):
        prefix = container_id[:length]
        if not any(o.startswith(prefix) for o in others if o != container_id):
            return prefix
    return container_id


def test_run_prints_hello(cluster: Proxy) -> None:
    result = cluster.docker("run", "--rm", "busybox", "echo", "hello")
    assert result.stdout == "hello\n"


def test_round_robin_places_two_on_each_node(cluster: Proxy, nodes: list[DockerNode]) -> None:
    ids = [cluster.docker("run", "-d", "busybox", "sleep", "300").stdout.strip() for _ in range(6)]
    counts = {n.name: len(n.container_ids(all=False) & set(ids)) for n in nodes}
    assert counts == {"node-1": 2, "node-2": 2, "node-3": 2}


def test_ps_shows_exactly_what_the_nodes_hold(cluster: Proxy, nodes: list[DockerNode]) -> None:
    running = [
        cluster.docker(
            "run", "-d", "--label", f"team={t}", "busybox", "sleep", "300"
        ).stdout.strip()
        for t in ("a", "b", "a")
    ]
    cluster.docker("run", "--name", "finished", "busybox", "true")
    cluster.docker("run", "-d", "--name", "alpha", "busybox", "sleep", "300")

    ps = set(cluster.docker("ps", "-q", "--no-trunc").stdout.split())
    assert ps == all_ids(nodes, all=False)
    assert len(ps) == 4
    ps_all = set(cluster.docker("ps", "-aq", "--no-trunc").stdout.split())
    assert ps_all == all_ids(nodes)
    assert len(ps_all) == 5
    short = cluster.docker("ps", "-q").stdout.split()
    assert sorted(short) == sorted(i[:12] for i in ps)

    by_name = cluster.docker("ps", "-a", "--filter", "name=finished", "--format", "{{.Names}}")
    assert by_name.stdout.split() == ["finished"]
    labelled = cluster.docker("ps", "-q", "--no-trunc", "--filter", "label=team=a").stdout.split()
    assert set(labelled) == {running[0], running[2]}
    assert cluster.docker("ps", "-q", "--filter", "status=exited").stdout.split() == [
        cluster.docker("inspect", "-f", "{{.Id}}", "finished").stdout.strip()[:12]
    ]
    newest = cluster.docker("ps", "-n", "2", "--format", "{{.Names}}").stdout.split()
    assert newest == ["alpha", "finished"]
    by_id = cluster.docker("ps", "-q", "--no-trunc", "--filter", f"id={running[1][:10]}")
    assert by_id.stdout.split() == [running[1]]
    by_image = cluster.docker("ps", "-aq", "--no-trunc", "--filter", "ancestor=busybox")
    assert set(by_image.stdout.split()) == ps_all
    sized = cluster.docker("ps", "-s", "--format", "{{.Names}} {{.Size}}").stdout.splitlines()
    assert len(sized) == 4 and all("virtual" in line for line in sized)


def test_list_entries_name_their_node(cluster: Proxy, nodes: list[DockerNode]) -> None:
    container_id = cluster.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    status, listing = cluster.json("GET", "/containers/json")
    assert status == 200
    (entry,) = listing
    assert entry["Id"] == container_id
    assert entry["Node"]["Name"] == node_of(nodes, container_id).name
    assert entry["Node"]["Addr"] == node_of(nodes, container_id).tcp_address


@pytest.mark.parametrize("ref_kind", ["id", "prefix", "name"])
def test_lifecycle_by_reference(cluster: Proxy, nodes: list[DockerNode], ref_kind: str) -> None:
    # Enough containers that one-character prefixes collide across nodes.
    for _ in range(5):
        cluster.docker("create", "busybox", "true")
    container_id = cluster.docker(
        "run", "-d", "--name", "life", "busybox", "sh", "-c", "echo started; sleep 300"
    ).stdout.strip()
    ref = {
        "id": container_id,
        "prefix": shortest_unique_prefix(container_id, all_ids(nodes)),
        "name": "life",
    }[ref_kind]
    home = node_of(nodes, container_id)

    inspected = json.loads(cluster.docker("inspect", ref).stdout)[0]
    assert inspected["Id"] == container_id
    assert inspected["Node"]["Name"] == home.name
    assert cluster.docker("logs", ref).stdout == "started\n"
    assert "sleep 300" in cluster.docker("top", ref).stdout

    cluster.docker("pause", ref)
    assert (
        home.docker("inspect", "-f", "{{.State.Status}}", container_id).stdout.strip() == "paused"
    )
    cluster.docker("unpause", ref)
    cluster.docker("stop", "-t", "1", ref)
    assert (
        home.docker("inspect", "-f", "{{.State.Running}}", container_id).stdout.strip() == "false"
    )
    cluster.docker("start", ref)
    cluster.docker("restart", "-t", "1", ref)
    assert home.docker("inspect", "-f", "{{.State.Running}}", container_id).stdout.strip() == "true"
    cluster.docker("kill", ref)
    assert cluster.docker("wait", ref).stdout.strip() == "137"

    cluster.docker("rename", ref, "life2")
    assert home.docker("inspect", "-f", "{{.Name}}", container_id).stdout.strip() == "/life2"
    renamed_ref = "life2" if ref_kind == "name" else ref
    cluster.docker("start", renamed_ref)
    cluster.docker("rm", "-f", renamed_ref)
    assert container_id not in all_ids(nodes)
    missing = cluster.docker("inspect", container_id, check=False)
    assert missing.returncode != 0
    assert "No such object" in missing.stderr or "No such container" in missing.stderr


def test_rm_of_a_stopped_container_by_name(cluster: Proxy, nodes: list[DockerNode]) -> None:
    container_id = cluster.docker("create", "--name", "stopped", "busybox", "true").stdout.strip()
    cluster.docker("rm", "stopped")
    assert container_id not in all_ids(nodes)


def test_name_clash_is_the_daemons_conflict_and_rm_frees_it(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    first = cluster.docker("run", "-d", "--name", "web", "busybox", "sleep", "300").stdout.strip()
    clash = cluster.docker("run", "-d", "--name", "web", "busybox", "sleep", "300", check=False)
    assert clash.returncode == 125
    assert (
        f'Conflict. The container name "/web" is already in use by container "{first}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    ) in clash.stderr
    assert len(all_ids(nodes)) == 1, "the refused create left a container behind"

    status, body = cluster.json("POST", "/containers/create?name=web", {"Image": "busybox"})
    assert (status, body["message"].split(".")[0]) == (409, "Conflict")

    cluster.docker("rm", "-f", "web")
    second = cluster.docker("run", "-d", "--name", "web", "busybox", "sleep", "300").stdout.strip()
    assert second != first
    cluster.docker("rename", "web", "web-old")
    cluster.docker("run", "-d", "--name", "web", "busybox", "true")
    taken = cluster.docker("rename", "web-old", "web", check=False)
    assert taken.returncode != 0 and "Conflict" in taken.stderr


def test_unknown_and_bad_references(cluster: Proxy) -> None:
    status, body = cluster.json("GET", "/containers/nosuchthing/json")
    assert (status, body) == (404, {"message": "No such container: nosuchthing"})
    status, body = cluster.json("POST", "/containers/create?name=bad%20name", {"Image": "busybox"})
    assert status == 400
    assert body["message"].startswith("Invalid container name (bad name)")
    status, body = cluster.json("POST", "/exec/nosuchexec/start", {"Detach": True})
    assert (status, body) == (404, {"message": "No such exec instance: nosuchexec"})


def test_missing_image_is_the_nodes_404(cluster: Proxy, nodes: list[DockerNode]) -> None:
    status, body = cluster.json("POST", "/containers/create", {"Image": "nosuchimage:1"})
    assert status == 404
    assert "No such image" in body["message"]
    assert not all_ids(nodes)


def test_prune_removes_stopped_containers_on_every_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    stopped = {cluster.docker("create", "busybox", "true").stdout.strip() for _ in range(3)}
    running = cluster.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    assert len({node_of(nodes, c).name for c in stopped}) == 3
    output = cluster.docker("container", "prune", "-f").stdout
    for container_id in stopped:
        assert container_id in output
    assert all_ids(nodes) == {running}
    # Pruned names and IDs are gone from the index too.
    assert cluster.json("GET", f"/containers/{next(iter(stopped))}/json")[0] == 404
