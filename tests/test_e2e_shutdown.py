"""Graceful shutdown and reload of a real proxy process over real nodes, driven with the
docker CLI: SIGTERM lets the streams under way finish (up to [server] shutdown_timeout)
while new connections are refused, then exits 0; SIGHUP applies the config file's nodes and
policy while the streams go on."""

from __future__ import annotations

import json
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from swarmproxy.local_nodes import DockerNode, cli_env
from tests.conftest import clear
from tests.rig.proxy import Proxy, node_table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Lines a second, for as long as the test needs.
TICKS = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done"


@pytest.fixture
def workdir(
    tmp_path_factory: pytest.TempPathFactory, nodes: list[DockerNode]
) -> Iterator[pathlib.Path]:
    yield tmp_path_factory.mktemp("proxy-shutdown")
    # The proxy may be gone: the containers are removed on the nodes themselves.
    for node in nodes:
        node.remove_all_containers()


def follow(proxy: Proxy, *args: str) -> subprocess.Popen[bytes]:
    """A docker CLI command whose output is read as it comes."""
    return subprocess.Popen(
        ["docker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(proxy.address, proxy.workdir / "cli"),
    )


def first_line(process: subprocess.Popen[bytes]) -> bytes:
    assert process.stdout is not None
    return process.stdout.readline()


def streams(proxy: Proxy, name: str, script: str) -> list[subprocess.Popen[bytes]]:
    """A `docker logs -f` of a detached container and an attached `docker run`, both of
    `script`, each once its first line has come through."""
    proxy.docker("run", "-d", "--name", name, "busybox", "sh", "-c", script)
    following = [
        follow(proxy, "logs", "-f", name),
        follow(proxy, "run", "--name", f"{name}-run", "busybox", "sh", "-c", script),
    ]
    for process in following:
        assert first_line(process) in (b"line 1\n", b"tick 1\n")
    return following


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.kill()
        process.wait()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_until_refused(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not refused(port):
        assert time.monotonic() < deadline, "the proxy still takes connections after SIGTERM"
        time.sleep(0.05)


def test_streams_under_way_finish_after_sigterm_and_the_proxy_exits_0(
    nodes: list[DockerNode], workdir: pathlib.Path
) -> None:
    proxy = Proxy.start(workdir, nodes, server_toml="shutdown_timeout = 30")
    following = streams(
        proxy, "shut-logs", "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done"
    )
    try:
        signalled = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        wait_until_refused(proxy.port)
        late = proxy.docker("ps", check=False, timeout=20)
        assert late.returncode != 0
        assert "Cannot connect to the Docker daemon" in late.stderr
        # Both streams run to their end, and their commands succeed.
        for process in following:
            out, err = process.communicate(timeout=30)
            rest = b"".join(b"line %d\n" % i for i in range(2, 7))
            assert (out, process.returncode) == (rest, 0), err
        assert proxy.process.wait(30) == 0
        # Once the streams were done, nothing held the exit: not the whole timeout.
        assert time.monotonic() - signalled < 20
    finally:
        stop_all(following)
        proxy.stop()
    assert "shutting down" in proxy.log_tail()


def test_a_stream_that_outlasts_the_timeout_is_cut_and_the_proxy_exits_0(
    nodes: list[DockerNode], workdir: pathlib.Path
) -> None:
    proxy = Proxy.start(workdir, nodes, server_toml="shutdown_timeout = 2")
    following = streams(proxy, "shut-endless", TICKS)
    try:
        signalled = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(30) == 0
        waited = time.monotonic() - signalled
        assert 2 <= waited < 4, f"exited {waited:.1f}s after SIGTERM with a 2s timeout"
        # The streams went on until the timeout, then ended with the process.
        for process in following:
            out, _ = process.communicate(timeout=10)
            assert b"tick 3\n" in out
    finally:
        stop_all(following)
        proxy.stop()


# --- SIGHUP --------------------------------------------------------------------------------


class Lines:
    """The lines of a process's output as they come, each with when it came."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[tuple[float, bytes]] = []
        self._process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append((time.monotonic(), line))

    def wait_after(self, moment: float, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(when > moment for when, _ in self.lines):
            assert time.monotonic() < deadline, "the stream stopped"
            time.sleep(0.05)


def write_config(proxy: Proxy, nodes: Sequence[DockerNode], extra: str = "") -> None:
    """The proxy's config file with other [[nodes]], and `extra` in place of its [policy]."""
    path = proxy.workdir / "config.toml"
    head = re.split(r"^\[policy\]$|^\[\[nodes\]\]$", path.read_text(), maxsplit=1, flags=re.M)[0]
    tables = "".join(node_table(n, int(n.name.rpartition("-")[2]), None) for n in nodes)
    path.write_text(f"{head}{extra}\n{tables}")


def reload(proxy: Proxy, expected: str) -> None:
    """SIGHUP, then wait for the log to say `expected` one more time."""
    before = proxy.log_path.read_text().count(expected)
    proxy.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while proxy.log_path.read_text().count(expected) == before:
        assert time.monotonic() < deadline, f"no {expected!r} after SIGHUP:\n{proxy.log_tail()}"
        time.sleep(0.05)


def node_names(proxy: Proxy) -> list[str]:
    listed = json.loads(proxy.node_cli("ls", "--json").stdout)
    return sorted(node["Name"] for node in listed)


def info_nodes(proxy: Proxy) -> str:
    """The node count `docker info` shows."""
    lines = proxy.docker("info").stdout.splitlines()
    return next(line.strip() for line in lines if line.strip().startswith("Nodes:"))


def create_privileged(proxy: Proxy) -> subprocess.CompletedProcess[str]:
    return proxy.docker("create", "--privileged", "busybox", "true", check=False)


def test_sighup_applies_the_config_nodes_and_policy_while_streams_go_on(
    nodes: list[DockerNode], workdir: pathlib.Path
) -> None:
    node_1, node_2, node_3 = nodes
    proxy = Proxy.start(workdir, [node_1, node_2])
    # Registered at run time, not in the config: no reload unregisters it.
    proxy.node_cli("add", node_3.tcp_address, "--name", "node-3")
    assert node_names(proxy) == ["node-1", "node-2", "node-3"]
    proxy.docker(
        *("run", "-d", "--name", "hup-ticks", "-e", "constraint:node==node-1"),
        *("busybox", "sh", "-c", TICKS),
    )
    ticks = follow(proxy, "logs", "-f", "hup-ticks")
    try:
        assert first_line(ticks) == b"tick 1\n"
        received = Lines(ticks)
        assert create_privileged(proxy).returncode == 0

        # node-2 leaves the config, and a policy comes in.
        write_config(proxy, [node_1], "[policy]\nallow_privileged = false\n")
        reload(proxy, "event=reloaded")
        assert node_names(proxy) == ["node-1", "node-3"]
        assert info_nodes(proxy) == "Nodes: 2"
        refusal = create_privileged(proxy)
        assert refusal.returncode != 0
        assert "authorization denied by policy rule allow_privileged" in refusal.stderr

        # A config that does not load changes nothing.
        config = proxy.workdir / "config.toml"
        good = config.read_text()
        config.write_text(good.replace("allow_privileged = false", "allow_privileged = maybe"))
        reload(proxy, "reload refused")
        proxy.wait_logged("config kept")
        assert node_names(proxy) == ["node-1", "node-3"]
        assert create_privileged(proxy).returncode != 0

        # node-2 comes back, and the policy goes.
        write_config(proxy, [node_1, node_2])
        reload(proxy, "event=reloaded")
        assert node_names(proxy) == ["node-1", "node-2", "node-3"]
        assert info_nodes(proxy) == "Nodes: 3"
        assert create_privileged(proxy).returncode == 0

        # The stream opened before the reloads never stopped: its lines follow each other,
        # and more come after the last reload.
        reloaded = time.monotonic()
        received.wait_after(reloaded)
        assert ticks.poll() is None
        numbers = [int(line.split()[1]) for _, line in received.lines]
        assert numbers == list(range(2, 2 + len(numbers)))
    finally:
        ticks.kill()
        ticks.wait()
        clear(proxy, nodes)
        proxy.stop()
