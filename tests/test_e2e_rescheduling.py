"""Opt-in rescheduling: a container that asks for it (`-e reschedule:on-node-failure`,
classic Swarm's) is made again on another node when its node stays down, and the old one
is removed when that node comes back. One that does not ask stays where it was."""

from __future__ import annotations

import json

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import Proxy
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_a_container_asking_for_it_is_rescheduled_and_its_duplicate_removed(
    nodes: list[DockerNode], crashing_node: DockerNode, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Proxy.start(
        tmp_path_factory.mktemp("reschedule"),
        [nodes[0], crashing_node],
        extra_toml="[scheduler]\nreschedule_grace = 2.0\n",
    )

    def where(ref: str) -> tuple[str, str]:
        """ID and node of a container; empty while its node cannot say."""
        answered = proxy.docker("inspect", ref, check=False)
        if answered.returncode != 0:
            return "", ""
        inspected = json.loads(answered.stdout)[0]
        return inspected["Id"], inspected["Node"]["Name"]

    try:
        # Soft: the placement may fall back to another node once this one is down.
        placed = ("-e", "constraint:node==~crashing")
        first = proxy.docker(
            "run",
            "-d",
            "--name",
            "svc",
            "-e",
            "reschedule:on-node-failure",
            *placed,
            "busybox",
            "sleep",
            "300",
        ).stdout.strip()
        proxy.docker("run", "-d", "--name", "plain", *placed, "busybox", "sleep", "300")
        assert where("svc") == (first, "crashing")
        labels = json.loads(proxy.docker("inspect", "svc").stdout)[0]["Config"]["Labels"]
        assert labels["com.docker.swarm.reschedule-policies"] == '["on-node-failure"]'

        crashing_node.crash()
        wait_for(lambda: where("svc")[1] == nodes[0].name, 30, interval=0.3)
        second, _ = where("svc")
        assert second != first
        state = json.loads(proxy.docker("inspect", "svc").stdout)[0]["State"]
        assert state["Running"]
        # The one that did not ask is left to its node.
        assert proxy.docker("inspect", "plain", check=False).returncode != 0

        crashing_node.relaunch()
        wait_for(lambda: first not in crashing_node.container_ids(), 30, interval=0.3)
        assert where("svc") == (second, nodes[0].name)
        assert "plain" in crashing_node.docker("ps", "-a", "--format", "{{.Names}}").stdout
    finally:
        proxy.stop()
        nodes[0].remove_all_containers()
