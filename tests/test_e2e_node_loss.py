"""A daemon killed under live streams: `logs -f`, `attach` and `exec -i` through the proxy
end with an error within a second, and the proxy keeps no socket of them."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from swarmproxy.local_nodes import DOCKER_CLI, DockerNode, cli_env
from tests.rig.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid: int, level: int, timeout: float = 10) -> int:
    """The proxy's descriptor count once it is back to `level` (or what it is at the end)."""
    deadline = time.monotonic() + timeout
    while (count := open_fds(pid)) > level and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def test_streams_end_when_their_node_dies(
    nodes: list[DockerNode], crashing_node: DockerNode, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Proxy.start(tmp_path_factory.mktemp("loss"), [nodes[0], crashing_node])
    try:
        talker = proxy.docker(
            "run",
            "-d",
            "-i",
            "-e",
            "constraint:node==crashing",
            "busybox",
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.2; done",
        ).stdout.strip()
        time.sleep(0.5)
        baseline = settle(proxy.process.pid, 0, timeout=1)
        env = cli_env(proxy.address, proxy.workdir / "cli", None)
        commands = {
            "logs": [DOCKER_CLI, "logs", "-f", talker],
            "attach": [DOCKER_CLI, "attach", "--no-stdin", talker],
            "exec": [DOCKER_CLI, "exec", "-i", talker, "cat"],
        }
        streams = {
            kind: subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for kind, command in commands.items()
        }
        time.sleep(1.5)
        assert all(s.poll() is None for s in streams.values()), "a stream ended early"
        assert open_fds(proxy.process.pid) > baseline

        crashing_node.crash()
        killed = time.monotonic()
        ended = {}
        for kind, stream in streams.items():
            stream.wait(10)
            ended[kind] = time.monotonic() - killed
        for stream in streams.values():
            for pipe in (stream.stdin, stream.stdout, stream.stderr):
                if pipe is not None:
                    pipe.close()
        assert max(ended.values()) < 1.5, ended
        # The node's end shows: a failed or cut stream, not a clean one.
        assert streams["exec"].returncode != 0 or streams["attach"].returncode != 0
        assert settle(proxy.process.pid, baseline) <= baseline
        # And the proxy carries on with the node that is left.
        assert proxy.docker("run", "--rm", "busybox", "echo", "alive").stdout == "alive\n"
    finally:
        proxy.stop()
        nodes[0].remove_all_containers()
