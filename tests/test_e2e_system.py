"""The proxy's own answers: ping, version, info, errors, and a node that goes away."""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

import pytest

from swarmproxy.local_nodes import DockerNode, run_docker, start_nodes, stop_nodes
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_version_negotiates_without_warnings(proxy: Proxy) -> None:
    result = proxy.docker("version")
    assert result.stderr == ""
    assert "API version:       1.41 (downgraded from" in result.stdout
    assert "swarmproxy/" in result.stdout
    for name in ("node-1", "node-2", "node-3"):
        assert name in result.stdout


def test_ping_like_a_daemon(proxy: Proxy) -> None:
    for method in ("GET", "HEAD"):
        status, headers, body = proxy.request(method, "/_ping")
        assert status == 200
        assert headers["Api-Version"] == "1.41"
        assert headers["Ostype"] == "linux"
        assert body == (b"OK" if method == "GET" else b"")
    assert proxy.request("GET", "/v1.41/_ping")[0] == 200


def test_info_shows_every_node(proxy: Proxy, nodes: list[DockerNode]) -> None:
    result = proxy.docker("info")
    assert " Nodes: 3" in result.stdout
    for node in nodes:
        assert f"  {node.name}: {node.tcp_address}" in result.stdout
    assert "└ Status: ready" in result.stdout
    status, info = proxy.json("GET", "/info")
    assert status == 200
    assert info["Name"] == "rig-proxy"
    assert info["ServerVersion"].startswith("swarmproxy/")
    direct = [json.loads(n.docker("info", "--format", "{{json .}}").stdout) for n in nodes]
    assert info["NCPU"] == sum(d["NCPU"] for d in direct)
    assert info["MemTotal"] == sum(d["MemTotal"] for d in direct)


def test_versions_and_unknown_endpoints_answer_like_the_daemon(proxy: Proxy) -> None:
    status, body = proxy.json("GET", "/v1.99/containers/json")
    assert (status, body) == (
        400,
        {"message": "client version 1.99 is too new. Maximum supported API version is 1.41"},
    )
    status, _, text = proxy.request("GET", "/v1.5/containers/json")
    assert status == 400 and text.startswith(b"client version 1.5 is too old.")
    for method, path in (("GET", "/nope"), ("DELETE", "/_ping"), ("GET", "/v1.41/plugins/x/y")):
        status, body = proxy.json(method, path)
        assert (status, body) == (404, {"message": "page not found"})
    # The proxy is still serving after all that.
    assert proxy.request("GET", "/_ping")[0] == 200


def test_a_node_that_goes_away(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A down node is named in errors, left out of listings, and not scheduled."""
    (doomed,) = start_nodes(1)
    doomed.name = "doomed"
    proxy = Proxy.start(tmp_path_factory.mktemp("proxy-down"), [nodes[0], doomed])
    try:
        placed = {}
        for _ in range(2):
            container_id = proxy.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
            placed[json.loads(proxy.docker("inspect", container_id).stdout)[0]["Node"]["Name"]] = (
                container_id
            )
        assert set(placed) == {nodes[0].name, doomed.name}
        stop_nodes([doomed])

        status, body = proxy.json("GET", f"/containers/{placed[doomed.name]}/json")
        assert doomed.name in body["message"] and doomed.tcp_address in body["message"]
        # A ping, or the node's event stream trying again, may have found it down first
        # (then it is disabled: 503); else this call did, and says what it asked (the
        # seed's DockerNodeError).
        assert status in (502, 503)
        if status == 502:
            assert body["message"].endswith(f"(in GET /containers/{placed[doomed.name]}/json)")
        listed = proxy.docker("ps", "-q", "--no-trunc").stdout.split()
        assert listed == [placed[nodes[0].name]]
        for _ in range(2):
            container_id = proxy.docker("create", "busybox", "true").stdout.strip()
            assert container_id in nodes[0].container_ids()
        # The failure disabled it (the healer's first back-off): calls to it fail at once.
        assert "└ Status: temporarily disabled" in proxy.docker("info").stdout
        status, body = proxy.json("GET", f"/containers/{placed[doomed.name]}/json")
        assert status == 503
        assert (
            f"node {doomed.name} ({doomed.tcp_address}) is temporarily disabled"
            in (body["message"])
        )
    finally:
        proxy.stop()
        stop_nodes([doomed])
        nodes[0].remove_all_containers()


def test_serves_on_a_unix_socket_too(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("proxy-unix")
    socket = pathlib.Path(tempfile.mkdtemp(prefix="sp-", dir="/tmp")) / "proxy.sock"
    proxy = Proxy.start(workdir, nodes, unix_socket=socket)
    try:
        host = f"unix://{socket}"
        assert run_docker(host, workdir, "run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
        piped = run_docker(host, workdir, "run", "-i", "--rm", "busybox", "cat", input="in\n")
        assert piped.stdout == "in\n"
    finally:
        proxy.stop()
        shutil.rmtree(socket.parent, ignore_errors=True)


def test_info_says_the_cluster_is_no_swarm_mode_member(
    proxy: Proxy, nodes: list[DockerNode]
) -> None:
    swarm = json.loads(proxy.docker("info", "--format", "{{json .Swarm}}").stdout)
    assert swarm["LocalNodeState"] == "inactive" and swarm["ControlAvailable"] is False
    plugins = json.loads(proxy.docker("info", "--format", "{{json .Plugins}}").stdout)
    # Every node here has the same drivers: the ones all of them have are all of them.
    on_node = json.loads(nodes[0].docker("info", "--format", "{{json .Plugins}}").stdout)
    assert plugins == on_node
