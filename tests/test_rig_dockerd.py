"""The dockerd rig itself: real daemons, started and stopped for real."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerCommandError, DockerNode, start_nodes, stop_nodes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dockerd") is None,
    reason="needs root and dockerd",
)


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[DockerNode]]:
    started = start_nodes(2)
    try:
        yield started
    finally:
        stop_nodes(started)


def _proc_names(workdir_marker: bytes) -> dict[int, str]:
    """PIDs (and their command names) whose command line mentions a path."""
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if workdir_marker in cmdline:
            found[int(entry.name)] = os.path.basename(cmdline.split(b"\0")[0].decode())
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


@pytest.mark.timeout(300)
def test_each_node_answers_on_its_own_addresses(nodes: list[DockerNode]) -> None:
    assert [n.name for n in nodes] == ["node-1", "node-2"]
    assert len({n.port for n in nodes}) == 2
    for node in nodes:
        assert node.tcp_address == f"tcp://127.0.0.1:{node.port}"
        for address in (node.tcp_address, node.unix_address):
            version = node.docker("-H", address, "version", "--format", "{{.Server.APIVersion}}")
            assert version.stdout.strip() == "1.41"
            # All daemons share one key.json (same ID/Name), so the data root is
            # what proves we reached this node and not its sibling.
            root = node.docker("-H", address, "info", "--format", "{{.DockerRootDir}}")
            assert root.stdout.strip() == str(node.workdir / "data")


@pytest.mark.timeout(300)
def test_busybox_runs_on_every_node(nodes: list[DockerNode]) -> None:
    for node in nodes:
        result = node.docker("run", "--rm", "busybox", "echo", "hello")
        assert result.stdout.strip() == "hello"
        assert node.container_ids() == set()


@pytest.mark.timeout(300)
def test_containers_stay_on_their_node(nodes: list[DockerNode]) -> None:
    node1, node2 = nodes
    created = node1.docker("create", "busybox", "true").stdout.strip()
    running = node1.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    try:
        assert {created, running} <= node1.container_ids()
        assert node1.container_ids(all=False) >= {running}
        assert created not in node1.container_ids(all=False)
        assert not {created, running} & node2.container_ids()
    finally:
        node1.remove_all_containers()
    assert node1.container_ids() == set()


@pytest.mark.timeout(300)
def test_stop_kills_daemons_and_removes_workdir() -> None:
    (node,) = start_nodes(1)
    try:
        node.docker("run", "-d", "busybox", "sleep", "300")
        owned = _proc_names(os.fsencode(node.workdir) + b"/")
        assert "containerd" in owned.values()
        assert node.pid in owned
        base = node.workdir.parent
    finally:
        node.stop()
    node.stop()  # idempotent
    for pid in owned:
        assert not _running(pid), f"{owned[pid]} (pid {pid}) survived stop()"
    assert not node.workdir.exists()
    # The rig made the base dir itself, so the last node out removes it.
    assert not base.exists()
    with pytest.raises(DockerCommandError, match=r"Cannot connect|connection refused|no such file"):
        node.docker("version", timeout=20)
