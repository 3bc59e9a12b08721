"""Regressions for what a review found by abusing the proxy: each is driven for real."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time

import pytest

from swarmproxy.local_nodes import DockerNode, cli_env, start_nodes, stop_nodes
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def named(nodes: list[DockerNode], name: str) -> list[str]:
    """IDs of the containers called `name`, over every node."""
    return [
        cid
        for n in nodes
        for cid in n.docker("ps", "-aq", "--no-trunc", "--filter", f"name=^/{name}$").stdout.split()
    ]


def test_a_create_abandoned_by_its_client_keeps_its_name(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    for i in range(5):
        name = f"abandoned{i}"
        body = b'{"Image":"busybox","Cmd":["true"]}'
        with socket.create_connection(("127.0.0.1", cluster.port)) as raw:
            raw.sendall(
                f"POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.005 * i)
        time.sleep(0.5)  # let the node answer the abandoned create
        again = cluster.docker("create", "--name", name, "busybox", "true", check=False)
        holders = named(nodes, name)
        assert len(holders) == 1, f"{name} is held by {holders}; create said: {again.stderr}"


def test_a_client_hanging_up_mid_stream_is_not_the_nodes_fault(cluster: Proxy) -> None:
    # More than every socket buffer on the way holds: the proxy is still writing when
    # the client resets the connection.
    cluster.docker(
        "run", "--name", "chatty", "busybox", "sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x"
    )
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", cluster.port)) as raw:
            raw.sendall(b"GET /containers/chatty/logs?stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            received = 0
            while received < 200_000:
                received += len(raw.recv(65536))
            linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        time.sleep(0.1)
        # Asked at once: the health loop and the next request would make the node ready again.
        _, version = cluster.json("GET", "/version")
        statuses = {c["Name"]: c["Details"].get("Status") for c in version["Components"][1:]}
        assert set(statuses.values()) == {"ready"}, statuses


def test_query_strings_reach_the_node_as_sent(cluster: Proxy, tmp_path: object) -> None:
    cluster.docker("run", "-d", "--name", "odd", "busybox", "sleep", "300")
    cluster.docker("exec", "odd", "sh", "-c", "echo hash > '/tmp/a#b'; echo pct > /tmp/p%41")
    env = cli_env(cluster.address, cluster.workdir / "cli")
    for path, content in (("/tmp/a#b", b"hash\n"), ("/tmp/p%41", b"pct\n")):
        archive = subprocess.run(
            ["docker", "cp", f"odd:{path}", "-"],
            capture_output=True,
            env=env,
            timeout=30,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            (member,) = tar.getmembers()
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == content


def test_a_body_on_a_bodiless_call_does_not_hang(cluster: Proxy) -> None:
    cluster.docker("create", "--name", "bodied", "busybox", "true")
    assert cluster.request("GET", "/containers/bodied/json", {"x": 1}, timeout=10)[0] == 200
    assert cluster.request("DELETE", "/containers/bodied", {"x": 1}, timeout=10)[0] == 204


def test_racing_renames_leave_one_true_name(cluster: Proxy, nodes: list[DockerNode]) -> None:
    container_id = cluster.docker("create", "--name", "racer", "busybox", "true").stdout.strip()
    threads = [
        threading.Thread(
            target=cluster.request, args=("POST", f"/containers/racer/rename?name={n}")
        )
        for n in ("left", "right")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    actual = cluster.docker("inspect", "-f", "{{.Name}}", container_id).stdout.strip()[1:]
    loser = {"left", "right"} - {actual}
    assert actual in {"left", "right"}
    assert cluster.docker("inspect", "-f", "{{.Id}}", actual).stdout.strip() == container_id
    (other,) = loser
    assert cluster.docker("inspect", other, check=False).returncode != 0
    cluster.docker("create", "--name", other, "busybox", "true")
    assert cluster.docker("inspect", "racer", check=False).returncode != 0


def test_names_the_daemon_chooses_are_reserved_cluster_wide(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    container_id = cluster.docker("create", "busybox", "true").stdout.strip()
    name = cluster.docker("inspect", "-f", "{{.Name}}", container_id).stdout.strip()[1:]
    clash = cluster.docker("create", "--name", name, "busybox", "true", check=False)
    assert clash.returncode != 0 and "Conflict" in clash.stderr
    assert named(nodes, name) == [container_id]


def test_a_strange_header_on_a_hijack_is_no_node_failure(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "hdr", "busybox", "sleep", "300")
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as raw:
        raw.sendall(
            b"POST /containers/hdr/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\nX-A: \xe2\x82\xac\r\n\r\n"
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 101 ")
    _, version = cluster.json("GET", "/version")
    assert {c["Details"].get("Status") for c in version["Components"][1:]} == {"ready"}


def test_a_node_dying_mid_stream_truncates_the_stream(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The status went out already: the client must see a cut, not a clean end."""
    (doomed,) = start_nodes(1)
    doomed.name = "doomed"
    proxy = Proxy.start(tmp_path_factory.mktemp("proxy-cut"), [nodes[0], doomed])
    try:
        container_id = doomed.docker(
            "run", "-d", "busybox", "sh", "-c", "while true; do echo x; sleep 0.1; done"
        ).stdout.strip()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as raw:
            raw.sendall(
                f"GET /containers/{container_id}/logs?follow=1&stdout=1 HTTP/1.1\r\n"
                "Host: x\r\n\r\n".encode()
            )
            received = raw.recv(65536)
            assert received.startswith(b"HTTP/1.1 200 ")
            # Killed, not stopped: a stop would end the container and the stream cleanly.
            os.kill(doomed.pid, signal.SIGKILL)
            while chunk := raw.recv(65536):
                received += chunk
        # Chunked encoding ends with an empty chunk: a clean end would carry it.
        assert not received.endswith(b"0\r\n\r\n")
        assert proxy.request("GET", "/_ping")[0] == 200
        proxy.wait_logged("stream failed")
    finally:
        proxy.stop()
        stop_nodes([doomed])
