"""A node that stops answering and comes back, seen by two proxy replicas on one Redis.

The node is a real dockerd frozen with SIGSTOP: its port still accepts connections, but
nothing answers, the way a hung daemon or a lost network behaves.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode, start_nodes, stop_nodes
from tests.rig.proxy import Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# What the rig's proxies use: `[health] interval = 1.0`, and the default ping timeout.
INTERVAL, TIMEOUT = 1.0, 3.0


def status_of(proxy: Proxy, node: DockerNode) -> str:
    info = proxy.docker("info").stdout.splitlines()
    at = info.index(
        next(line for line in info if line.strip() == f"{node.name}: {node.tcp_address}")
    )
    return next(line for line in info[at:] if "└ Status:" in line).split(": ", 1)[1]


def container_on(proxy: Proxy, node: DockerNode) -> str:
    """A container that says `hi` and sleeps, run through `proxy` until one lands on `node`."""
    while True:
        container_id = proxy.docker(
            "run", "-d", "busybox", "sh", "-c", "echo hi; sleep 300"
        ).stdout.strip()
        if container_id in node.container_ids():
            return container_id


def refused_at_once(proxy: Proxy, healthy: DockerNode, container_id: str) -> str:
    """Asserts that new containers go to `healthy` and that a call to `container_id`, on
    the failed node, fails at once rather than waiting on that node; the error it printed."""
    for _ in range(3):
        placed = proxy.docker("create", "busybox", "true").stdout.strip()
        assert placed in healthy.container_ids()
    started = time.monotonic()
    logs = proxy.docker("logs", container_id, check=False, timeout=10)
    assert time.monotonic() - started < 1.5
    assert logs.returncode != 0
    return logs.stderr


@pytest.fixture
def frozen_node() -> Iterator[DockerNode]:
    (node,) = start_nodes(1)
    node.name = "frozen"
    try:
        yield node
    finally:
        os.kill(node.pid, signal.SIGCONT)
        stop_nodes([node])


def test_a_hung_node_is_disabled_skipped_and_back_when_it_answers(
    nodes: list[DockerNode],
    frozen_node: DockerNode,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    members = [nodes[0], frozen_node]
    replicas = [
        Proxy.start(
            tmp_path_factory.mktemp(f"replica-{i}"),
            members,
            redis_server.url,
            prefix="sp-healing:",
        )
        for i in (1, 2)
    ]
    first, second = replicas
    try:
        assert [status_of(p, frozen_node) for p in replicas] == ["ready", "ready"]
        on_frozen = container_on(first, frozen_node)

        os.kill(frozen_node.pid, signal.SIGSTOP)
        took = wait_for(
            lambda: status_of(first, frozen_node) == "temporarily disabled", 10, interval=0.1
        )
        # Seen within one round of pings plus the ping's timeout (and a little slack).
        assert took <= INTERVAL + TIMEOUT + 1.5
        # The other replica reads the same status from the shared store.
        wait_for(
            lambda: status_of(second, frozen_node) == "temporarily disabled",
            INTERVAL + 1,
            interval=0.1,
        )

        for proxy in replicas:
            error = refused_at_once(proxy, nodes[0], on_frozen)
            assert f"node frozen ({frozen_node.tcp_address}) is temporarily disabled" in error

        os.kill(frozen_node.pid, signal.SIGCONT)
        wait_for(lambda: status_of(first, frozen_node) == "ready", 30, interval=0.1)
        wait_for(lambda: status_of(second, frozen_node) == "ready", INTERVAL + 2, interval=0.1)
        assert second.docker("logs", on_frozen).stdout == "hi\n"
        inspected = json.loads(first.docker("inspect", on_frozen).stdout)
        assert inspected[0]["Node"]["Name"] == "frozen"
    finally:
        for proxy in replicas:
            proxy.stop()
        nodes[0].remove_all_containers()


def test_a_killed_daemon_is_disabled_and_back_when_restarted(
    nodes: list[DockerNode], crashing_node: DockerNode, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Proxy.start(tmp_path_factory.mktemp("crash"), [nodes[0], crashing_node])
    try:
        on_crashing = container_on(proxy, crashing_node)

        crashing_node.crash()
        took = wait_for(lambda: status_of(proxy, crashing_node) != "ready", 10, interval=0.1)
        assert took <= INTERVAL + TIMEOUT + 1.5
        wait_for(lambda: status_of(proxy, crashing_node) == "temporarily disabled", 5, interval=0.1)
        error = refused_at_once(proxy, nodes[0], on_crashing)
        assert f"node crashing ({crashing_node.tcp_address})" in error

        crashing_node.relaunch()
        wait_for(lambda: status_of(proxy, crashing_node) == "ready", 30, interval=0.1)
        assert proxy.docker("logs", on_crashing).stdout == "hi\n"
        proxy.docker("start", on_crashing)  # a no-op if the restarted daemon kept it running
        assert proxy.docker("exec", on_crashing, "echo", "back").stdout == "back\n"
    finally:
        proxy.stop()
        nodes[0].remove_all_containers()
