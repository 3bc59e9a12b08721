"""Hooks named in the config of a real proxy, in front of the real nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import Proxy, serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HOOKS = """[hooks]
before_container_create = ["tests.hooks_for_tests:avoid_node_1"]
before_node_register = ["tests.hooks_for_tests:mark_registered"]
before_node_unregister = ["tests.hooks_for_tests:keep_pinned"]
"""


@pytest.fixture
def hooked(nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with serving(tmp_path_factory.mktemp("hooked"), nodes, extra_toml=HOOKS) as proxy:
        yield proxy


def test_a_hook_changes_placement(hooked: Proxy, nodes: list[DockerNode]) -> None:
    created = [hooked.docker("create", "busybox", "true").stdout.strip() for _ in range(6)]
    assert not set(created) & nodes[0].container_ids()
    assert len(set(created) & (nodes[1].container_ids() | nodes[2].container_ids())) == 6
    hooked.wait_logged('event="placement refused" node=node-1')


def test_hooks_refuse_an_unregistration_and_change_a_registration(
    hooked: Proxy, nodes: list[DockerNode]
) -> None:
    # The config's nodes were registered through the hook too.
    status, answer = hooked.admin("GET", "/swarmproxy/v1/nodes/node-1")
    assert status == 200 and answer["Labels"]["registered-by"] == "hook"
    hooked.node_cli("update", "node-2", "--label", "pinned=yes")
    refused = hooked.node_cli("rm", "node-2", check=False)
    assert refused.returncode == 1
    assert "refused by hook keep_pinned: node-2 is pinned" in refused.stderr
    assert "node-2" in hooked.node_cli("ls").stdout

    hooked.node_cli("rm", "node-3")
    assert "node-3" not in hooked.node_cli("ls").stdout
    hooked.node_cli("add", nodes[2].tcp_address, "--name", "node-3")
    status, answer = hooked.admin("GET", "/swarmproxy/v1/nodes/node-3")
    assert status == 200 and answer["Labels"] == {"registered-by": "hook"}


def test_a_config_node_refused_by_a_hook_is_not_served(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    refusing = '[hooks]\nbefore_node_register = ["tests.hooks_for_tests:refuse_node_2"]\n'
    proxy = Proxy.start(tmp_path_factory.mktemp("refusing"), nodes, extra_toml=refusing)
    try:
        listed = proxy.node_cli("ls").stdout
        assert "node-1" in listed and "node-3" in listed and "node-2" not in listed
        proxy.wait_logged("node-2 is not for this cluster")
        assert " Nodes: 2" in proxy.docker("info").stdout
    finally:
        proxy.stop()
