"""`[server] workers = 2`: two processes on one port keep every guarantee of one."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import pathlib
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode, run_docker
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def workers_of(proxy: Proxy) -> set[int]:
    children = pathlib.Path(f"/proc/{proxy.process.pid}/task/{proxy.process.pid}/children")
    return {int(pid) for pid in children.read_text().split()}


def connections_of(pid: int, port: int) -> int:
    """Established connections that the process `pid` accepted on `port`."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for line in pathlib.Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


def settle_health() -> None:
    """A worker serves before its first round of pings: one that has not pinged a node yet
    neither places nor lists there. Each round is one [health] interval (1 s in the rig);
    replicas learn the shared health from storage at theirs."""
    time.sleep(2.5)


@pytest.fixture(scope="module")
def workers(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("workers")
    proxy = Proxy.start(
        workdir,
        nodes,
        redis_server.url,
        prefix=f"sp-{uuid.uuid4().hex[:8]}:",
        server_toml="workers = 2\n",
        extra_toml='[scheduler]\nstrategy = "round-robin"\n',
        unix_socket=workdir / "sp.sock",
    )
    try:
        wait_for(lambda: len(workers_of(proxy)) == 2, timeout=30)
        # Both listening, each having seen every node answer: a worker still starting takes
        # no connection, and one yet to ping a node neither places nor lists there.
        for index in (0, 1):
            proxy.wait_logged(f"event=serving worker={index}", timeout=30)
        settle_health()
        yield proxy
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()


def test_both_workers_take_connections(workers: Proxy) -> None:
    port = workers.port
    held = []
    try:
        for _ in range(24):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/_ping")
            assert connection.getresponse().read() == b"OK"
            held.append(connection)
        accepted = {pid: connections_of(pid, port) for pid in workers_of(workers)}
        assert sum(accepted.values()) == 24
        assert all(count > 0 for count in accepted.values()), accepted
    finally:
        for connection in held:
            connection.close()


def test_the_unix_socket_is_served_too(workers: Proxy) -> None:
    socket_path = workers.workdir / "sp.sock"
    shown = run_docker(
        f"unix://{socket_path}", workers.workdir, "version", "-f", "{{.Server.Version}}"
    )
    assert shown.stdout.strip()


def create(
    proxy: Proxy, name: str = "", cmd: tuple[str, ...] = ("true",)
) -> tuple[int, dict[str, object]]:
    """A create on a connection of its own, so that either worker may take it."""
    query = f"?name={name}" if name else ""
    status, _, body = proxy.request(
        "POST", f"/containers/create{query}", {"Image": "busybox", "Cmd": list(cmd)}
    )
    return status, json.loads(body or b"{}")


def test_a_name_is_given_once_across_workers(workers: Proxy) -> None:
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: create(workers, "only-once"), range(16)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 15
    listed = workers.docker("ps", "-a", "--filter", "name=only-once", "-q").stdout.split()
    assert len(listed) == 1


def test_round_robin_turns_across_workers(workers: Proxy, nodes: list[DockerNode]) -> None:
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: create(workers), range(6)))
    ids = {str(body["Id"]) for status, body in results if status == 201}
    assert len(ids) == 6
    per_node = [len(ids & node.container_ids()) for node in nodes]
    assert per_node == [2, 2, 2]


def test_what_one_worker_did_the_next_request_sees(workers: Proxy) -> None:
    for _ in range(5):
        status, body = create(workers, f"seen-{uuid.uuid4().hex[:6]}")
        assert status == 201
        container_id = str(body["Id"])
        # Each docker call is a connection of its own: any worker may answer it.
        assert container_id in workers.docker("ps", "-aq", "--no-trunc").stdout.split()
        assert workers.docker("inspect", "-f", "{{.Id}}", container_id).stdout.strip() == (
            container_id
        )
        workers.docker("rm", container_id)
        assert container_id not in workers.docker("ps", "-aq", "--no-trunc").stdout.split()
        gone = workers.docker("container", "inspect", container_id, check=False)
        assert gone.returncode != 0 and "No such container" in gone.stderr


def test_every_change_shows_in_the_next_ps_on_any_worker(workers: Proxy) -> None:
    def listed(all: bool) -> set[str]:
        status, listing = workers.json("GET", f"/v1.41/containers/json?all={int(all)}")
        assert status == 200
        return {c["Id"] for c in listing}

    # Each request is a connection of its own: the next may go to the other worker, whose
    # own events may not have come yet.
    for _ in range(8):
        status, body = create(workers, cmd=("sleep", "300"))
        assert status == 201
        container_id = str(body["Id"])
        assert container_id in listed(all=True) - listed(all=False)
        assert workers.request("POST", f"/v1.41/containers/{container_id}/start")[0] == 204
        assert container_id in listed(all=False)
        assert workers.request("POST", f"/v1.41/containers/{container_id}/kill")[0] == 204
        assert container_id not in listed(all=False)
        assert workers.request("DELETE", f"/v1.41/containers/{container_id}")[0] == 204
        assert container_id not in listed(all=True)


def test_a_worker_that_dies_is_replaced(workers: Proxy) -> None:
    # A worker dying within 5 s of its start is taken for a config that cannot serve.
    time.sleep(5.5)
    victim = min(workers_of(workers))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(workers_of(workers) - {victim}) == 2, timeout=20)
    assert workers.docker("version", "-f", "{{.Server.Version}}").stdout.strip()


def test_sigterm_stops_every_worker(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path: pathlib.Path
) -> None:
    proxy = Proxy.start(
        tmp_path,
        nodes,
        redis_server.url,
        f"sp-{uuid.uuid4().hex[:8]}:",
        server_toml="workers = 2\n",
    )
    try:
        wait_for(lambda: len(workers_of(proxy)) == 2, timeout=30)
        children = workers_of(proxy)
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(20) == 0
        assert not any(pathlib.Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        proxy.stop()
