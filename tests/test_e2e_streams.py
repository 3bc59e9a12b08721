"""Streams through the proxy: hijacked attach and exec, terminals, logs, copies, events."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import pathlib
import socket
import subprocess
import tarfile
import time

import pexpect
import pytest

from swarmproxy.local_nodes import DockerNode, cli_env
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_stdin_is_piped_through_and_the_half_close_travels(cluster: Proxy) -> None:
    result = cluster.docker("run", "-i", "--rm", "busybox", "cat", input="hi\n", timeout=30)
    assert result.stdout == "hi\n"
    assert result.returncode == 0


def test_large_stdin_round_trip(cluster: Proxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    result = cluster.docker("run", "-i", "--rm", "busybox", "wc", "-c", input=payload, timeout=60)
    assert result.stdout.split() == [str(len(payload))]


def test_exec_stdin_round_trip_is_byte_exact(cluster: Proxy) -> None:
    """Random bytes through `exec -i cat` come back unchanged, in both directions of the
    hijacked connection."""
    cluster.docker("run", "-d", "--name", "echoer", "busybox", "sleep", "300")
    payload = os.urandom(16 * 1024 * 1024)
    env = cli_env(cluster.address, cluster.workdir / "cli")
    result = subprocess.run(
        ["docker", "exec", "-i", "echoer", "cat"],
        input=payload,
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert len(result.stdout) == len(payload)
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(payload).digest()


def test_exec_output_that_comes_right_behind_the_upgrade(cluster: Proxy) -> None:
    """An exec that writes at once and exits: its output travels with or just after the
    node's 101, before the proxy pumps the connection, and none of it is lost."""
    cluster.docker("run", "-d", "--name", "quick", "busybox", "sleep", "300")
    expected = "".join(f"{i}\n" for i in range(1, 20001))
    for _ in range(5):
        assert cluster.docker("exec", "quick", "seq", "1", "20000").stdout == expected


def test_exec(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "ex", "busybox", "sleep", "300")
    assert cluster.docker("exec", "ex", "echo", "x").stdout == "x\n"
    assert cluster.docker("exec", "-i", "ex", "cat", input="in\n", timeout=30).stdout == "in\n"
    failed = cluster.docker("exec", "ex", "sh", "-c", "exit 7", check=False)
    assert failed.returncode == 7


def test_exec_inspect_and_detached_start(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "ex", "busybox", "sleep", "300")
    status, created = cluster.json(
        "POST", "/containers/ex/exec", {"Cmd": ["sh", "-c", "exit 3"], "AttachStdout": True}
    )
    assert status == 201
    exec_id = created["Id"]
    assert cluster.request("POST", f"/exec/{exec_id}/start", {"Detach": True})[0] == 200
    for _ in range(50):
        status, inspected = cluster.json("GET", f"/exec/{exec_id}/json")
        if not inspected["Running"]:
            break
        time.sleep(0.1)
    assert status == 200
    assert inspected["ExitCode"] == 3


def _terminal(proxy: Proxy, command: str) -> None:
    env = cli_env(proxy.address, proxy.workdir / "cli")
    child = pexpect.spawn(command, env=env, encoding="utf-8", timeout=20, dimensions=(33, 101))
    try:
        child.expect(r"[#$] ")
        child.sendline("echo answer-$((6*7)); stty size")
        child.expect("answer-42")
        child.expect(r"33 101")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3


def test_run_it_in_a_terminal(cluster: Proxy) -> None:
    _terminal(cluster, "docker run -it --rm busybox sh")


def test_exec_it_in_a_terminal(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "tty", "busybox", "sleep", "300")
    _terminal(cluster, "docker exec -it tty sh")


def test_attach_to_a_running_container(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "att", "busybox", "sh", "-c", "sleep 2; echo done")
    result = cluster.docker("attach", "att", timeout=30)
    assert result.stdout == "done\n"


def test_logs_follow_until_the_container_exits(cluster: Proxy) -> None:
    cluster.docker(
        "run",
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.5; done",
    )
    started = time.monotonic()
    result = cluster.docker("logs", "-f", "lg", timeout=30)
    assert result.stdout == "line1\nline2\nline3\n"
    assert time.monotonic() - started >= 0.5, "logs -f returned before the container ended"


def test_logs_follow_streams_as_lines_arrive(cluster: Proxy) -> None:
    cluster.docker(
        "run", "-d", "--name", "slow", "busybox", "sh", "-c", "echo first; sleep 30; echo last"
    )
    env = cli_env(cluster.address, cluster.workdir / "cli")
    with subprocess.Popen(
        ["docker", "logs", "-f", "slow"], stdout=subprocess.PIPE, env=env
    ) as follower:
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline() == b"first\n"
        finally:
            follower.kill()


def test_cp_both_ways(cluster: Proxy, tmp_path: pathlib.Path) -> None:
    cluster.docker("run", "-d", "--name", "files", "busybox", "sleep", "300")
    source = tmp_path / "in.txt"
    source.write_text("payload\n")
    cluster.docker("cp", str(source), "files:/in.txt")
    assert cluster.docker("exec", "files", "cat", "/in.txt").stdout == "payload\n"
    target = tmp_path / "out.txt"
    cluster.docker("cp", "files:/in.txt", str(target))
    assert target.read_text() == "payload\n"
    assert cluster.docker("cp", "files:/nope", str(target), check=False).returncode != 0


def test_export_is_a_valid_tar(cluster: Proxy) -> None:
    cluster.docker("create", "--name", "exp", "busybox", "true")
    env = cli_env(cluster.address, cluster.workdir / "cli")
    exported = subprocess.run(
        ["docker", "export", "exp"], capture_output=True, env=env, timeout=60, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        names = archive.getnames()
    assert "bin/busybox" in names


def test_stats_no_stream(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "busy", "busybox", "sleep", "300")
    result = cluster.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
    assert result.stdout.startswith("busy ")
    status, one_shot = cluster.json("GET", "/containers/busy/stats?stream=false")
    assert status == 200 and "memory_stats" in one_shot


def test_events_from_every_node_each_naming_its_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    since = int(time.time()) - 1
    ids = [cluster.docker("create", "busybox", "true").stdout.strip() for _ in range(3)]
    until = int(time.time()) + 1
    time.sleep(1.2)  # until must be in the past for the stream to end by itself
    result = cluster.docker(
        "events",
        "--since",
        str(since),
        "--until",
        str(until),
        "--filter",
        "event=create",
        "--format",
        "{{json .}}",
        timeout=30,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    created = {e["Actor"]["ID"]: e["Actor"]["Attributes"] for e in events}
    assert set(ids) <= set(created)
    by_node = {created[i]["node.name"] for i in ids}
    assert by_node == {n.name for n in nodes}
    for container_id in ids:
        home = next(n for n in nodes if container_id in n.container_ids())
        assert created[container_id]["node.addr"] == home.tcp_address
    times = [e["timeNano"] for e in events]
    assert times == sorted(times)


def test_diff_update_and_streaming_stats(cluster: Proxy) -> None:
    cluster.docker("run", "-d", "--name", "du", "busybox", "sh", "-c", "touch /made; sleep 300")
    time.sleep(0.3)
    assert "A /made" in cluster.docker("diff", "du").stdout
    cluster.docker("update", "--memory", "64m", "--memory-swap", "128m", "du")
    _, inspected = cluster.json("GET", "/containers/du/json")
    assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=20)
    try:
        conn.request("GET", "/v1.41/containers/du/stats?stream=1")
        response = conn.getresponse()
        assert response.status == 200
        first = json.loads(response.readline())
        second = json.loads(response.readline())
        assert first["id"] == second["id"]
    finally:
        conn.close()


def test_live_events_stream(cluster: Proxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=20)
    try:
        conn.request("GET", '/events?filters={"event":["create"]}')
        response = conn.getresponse()
        assert response.status == 200
        container_id = cluster.docker("create", "busybox", "true").stdout.strip()
        event = json.loads(response.readline())
        assert event["Actor"]["ID"] == container_id
        assert event["Actor"]["Attributes"]["node.name"].startswith("node-")
    finally:
        conn.close()


def test_attach_without_upgrade_is_a_plain_stream(cluster: Proxy) -> None:
    cluster.docker("run", "--name", "said", "busybox", "echo", "said-this")
    status, _, body = cluster.request("POST", "/containers/said/attach?logs=1&stream=0&stdout=1")
    assert status == 200
    # Multiplexed: an 8-byte frame header (stream 1 = stdout) before the payload.
    assert body[0] == 1 and body[8:] == b"said-this\n"


def _connections_to_nodes(proxy: Proxy, nodes: list[DockerNode]) -> int:
    """The proxy's established TCP connections to the nodes' ports."""
    listing = subprocess.run(
        ["ss", "-Htnp", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    ports = {f"127.0.0.1:{n.port}" for n in nodes}
    return sum(
        1
        for line in listing.splitlines()
        if f"pid={proxy.process.pid}," in line and line.split()[3] in ports
    )


def test_a_client_that_goes_away_cancels_the_request_to_the_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    cluster.docker("run", "-d", "--name", "quiet", "busybox", "sleep", "300")
    baseline = _connections_to_nodes(cluster, nodes)
    clients = []
    for path in ["/containers/quiet/logs?follow=1&stdout=1"] * 5 + ["/containers/quiet/wait"] * 5:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
        conn.request("GET" if "logs" in path else "POST", path)
        clients.append(conn)
    # Each request in flight holds a connection of its own, beside each node's event
    # watcher; it may be an idle pooled one that the baseline already counted.
    in_flight = len(nodes) + 10
    deadline = time.monotonic() + 10
    while _connections_to_nodes(cluster, nodes) < in_flight and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _connections_to_nodes(cluster, nodes) >= in_flight
    for conn in clients:
        conn.close()
    deadline = time.monotonic() + 10
    while _connections_to_nodes(cluster, nodes) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _connections_to_nodes(cluster, nodes) <= baseline
    assert cluster.request("GET", "/_ping")[0] == 200


def _rss(pid: int) -> int:
    """A process's resident memory, in bytes."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _unread_from_node(proxy: Proxy, node: DockerNode) -> int:
    """Bytes the node sent that wait unread: in the proxy's sockets to the node, or, once
    the proxy's receive window is closed, queued in the node's own sockets."""
    listing = subprocess.run(
        ["ss", "-Htnp", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    address = f"127.0.0.1:{node.port}"
    waiting = 0
    for line in listing.splitlines():
        received, queued, local, peer = line.split()[:4]
        if f"pid={proxy.process.pid}," in line and peer == address:
            waiting += int(received)
        elif local == address:
            waiting += int(queued)
    return waiting


def _await_throttled(proxy: Proxy, node: DockerNode) -> None:
    """Until the node's output piles up unread in the proxy's socket to it: the proxy has
    stopped reading from the node because its client does not read."""
    deadline = time.monotonic() + 40
    while _unread_from_node(proxy, node) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _unread_from_node(proxy, node) > 0, "the proxy kept reading for a client that does not"


# Far below what the streams below would take if the proxy held them.
MEMORY_BOUND = 24 * 1024 * 1024


def test_a_hijacked_stream_nobody_reads_throttles_the_node(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    node = nodes[0]
    cluster.docker(
        "run",
        "-d",
        "--name",
        "spew",
        "-e",
        f"constraint:node=={node.name}",
        "busybox",
        "sleep",
        "300",
    )
    status, created = cluster.json(
        "POST", "/containers/spew/exec", {"Cmd": ["cat", "/dev/zero"], "AttachStdout": True}
    )
    assert status == 201
    body = b'{"Detach": false, "Tty": false}'
    before = _rss(cluster.process.pid)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=20) as raw:
        raw.sendall(
            f"POST /v1.41/exec/{created['Id']}/start HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert raw.recv(65536).startswith(b"HTTP/1.1 101 ")
        _await_throttled(cluster, node)
        assert _rss(cluster.process.pid) - before < MEMORY_BOUND
        # A reader again: the output flows on.
        received = 0
        while received < 64 * 1024 * 1024:
            chunk = raw.recv(1024 * 1024)
            assert chunk, "the stream ended"
            received += len(chunk)


def test_logs_nobody_reads_throttle_the_node_then_arrive_whole(
    cluster: Proxy, nodes: list[DockerNode]
) -> None:
    node = nodes[0]
    # 60 000 numbered lines of 1 000 bytes: about 60 MB of logs, each line its own.
    script = "awk 'BEGIN { for (i = 0; i < 60000; i++) printf \"%08d %0990d\\n\", i, i }'"
    container_id = cluster.docker(
        "run", "-d", "-e", f"constraint:node=={node.name}", "busybox", "sh", "-c", script
    ).stdout.strip()
    assert cluster.docker("wait", container_id, timeout=120).stdout.strip() == "0"
    path = f"/v1.41/containers/{container_id}/logs?stdout=1"
    direct = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
    try:
        direct.request("GET", path)
        expected = direct.getresponse().read()
    finally:
        direct.close()
    assert len(expected) > 60_000_000

    before = _rss(cluster.process.pid)
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        # Long enough for the node to have sent it all, were the proxy reading for nobody.
        time.sleep(3)
        assert _rss(cluster.process.pid) - before < MEMORY_BOUND
        got = response.read()
    finally:
        conn.close()
    assert len(got) == len(expected)
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
