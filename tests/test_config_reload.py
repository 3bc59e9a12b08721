"""SIGHUP's reload (swarmproxy.api.lifecycle.Reloader) against a recording cluster: which
nodes it registers, unregisters and relabels, and the policy it swaps in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiohttp import web

from swarmproxy.api.lifecycle import Reloader
from swarmproxy.api.policy import POLICY, set_policy
from swarmproxy.cluster import Cluster
from swarmproxy.config import Config, ConfigError, from_dict
from swarmproxy.errors import Conflict, NotFound
from swarmproxy.storage import NodeRecord
from swarmproxy.tls import NodeTLS


@dataclass
class Registered:
    address: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


class RecordingCluster:
    """What the reload calls of a Cluster, with a hook that refuses some addresses."""

    def __init__(self, *nodes: Registered) -> None:
        self.nodes = list(nodes)
        self.calls: list[str] = []
        self.refused: set[str] = set()

    async def register(
        self, address: str, name: str, labels: Mapping[str, str], tls: NodeTLS | None
    ) -> None:
        self.calls.append(f"register {name}")
        if address in self.refused:
            raise Conflict(f"refused by hook: {address}")
        self.nodes.append(Registered(address, name, dict(labels)))

    async def unregister(self, ref: str) -> None:
        self.calls.append(f"unregister {ref}")
        if ref in self.refused:
            raise Conflict(f"refused by hook: {ref}")
        node = next((n for n in self.nodes if n.address == ref), None)
        if node is None:
            raise NotFound(f"no node {ref!r} in the cluster")
        self.nodes.remove(node)

    async def atomic_update_node(self, ref: str, change: Callable[[NodeRecord], None]) -> None:
        node = next(n for n in self.nodes if n.address == ref)
        record = NodeRecord(address=node.address, name=node.name, metadata=dict(node.labels))
        change(record)
        node.labels = dict(record.metadata)
        self.calls.append(f"relabel {node.name}")


def config(*nodes: dict[str, Any], policy: Mapping[str, Any] | None = None) -> Config:
    raw: dict[str, Any] = {"nodes": list(nodes)}
    if policy is not None:
        raw["policy"] = policy
    return from_dict(raw)


def node(index: int, **keys: Any) -> dict[str, Any]:
    return {"address": f"tcp://10.0.0.{index}:2375", "name": f"node-{index}", **keys}


def registered(index: int, **labels: str) -> Registered:
    return Registered(f"tcp://10.0.0.{index}:2375", f"node-{index}", dict(labels))


class Harness:
    def __init__(self, started: Config, cluster: RecordingCluster) -> None:
        self.cluster = cluster
        self.app = web.Application()
        set_policy(self.app, started.policy)
        self.next: Config | Exception = started
        self.reloader = Reloader(self.app, cast(Cluster, cluster), started, self._load)

    def _load(self) -> Config:
        if isinstance(self.next, Exception):
            raise self.next
        return self.next

    async def reload(self, new: Config | Exception) -> bool:
        self.next = new
        self.cluster.calls.clear()
        return await self.reloader.reload()

    def names(self) -> list[str]:
        return [n.name for n in self.cluster.nodes]


@pytest.fixture
async def harness() -> Any:
    # node-1 and node-2 from the config; node-9 registered through the admin API.
    cluster = RecordingCluster(registered(1), registered(2), registered(9))
    started = Harness(config(node(1), node(2)), cluster)
    yield started
    await started.reloader.close()


async def test_nodes_added_and_removed_from_the_config(harness: Harness) -> None:
    assert await harness.reload(config(node(1), node(3)))
    assert harness.cluster.calls == ["unregister tcp://10.0.0.2:2375", "register node-3"]
    # node-9 was never the config's: it stays.
    assert harness.names() == ["node-1", "node-9", "node-3"]
    # Unchanged nodes are left alone.
    assert await harness.reload(config(node(1), node(3)))
    assert harness.cluster.calls == []


async def test_an_admin_node_listed_in_the_config_becomes_the_configs(harness: Harness) -> None:
    assert await harness.reload(config(node(1), node(2), node(9)))
    assert harness.cluster.calls == []
    assert await harness.reload(config(node(1), node(2)))
    assert harness.cluster.calls == ["unregister tcp://10.0.0.9:2375"]


async def test_a_config_node_unregistered_at_run_time_is_registered_again(
    harness: Harness,
) -> None:
    await harness.cluster.unregister("tcp://10.0.0.2:2375")
    assert await harness.reload(config(node(1), node(2)))
    assert harness.cluster.calls == ["register node-2"]


async def test_changed_labels_are_applied_and_a_renamed_node_registered_again(
    harness: Harness,
) -> None:
    assert await harness.reload(config(node(1, labels={"zone": "b"}), node(2, name="two")))
    assert harness.cluster.calls == [
        "relabel node-1",
        "unregister tcp://10.0.0.2:2375",
        "register two",
    ]
    assert harness.cluster.nodes[0].labels == {"zone": "b"}
    assert harness.names() == ["node-1", "node-9", "two"]


async def test_refusals_are_logged_and_the_rest_applied(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.cluster.refused = {"tcp://10.0.0.2:2375", "tcp://10.0.0.4:2375"}
    assert await harness.reload(config(node(1), node(3), node(4)))
    assert harness.names() == ["node-1", "node-2", "node-9", "node-3"]
    events = [r.getMessage() for r in caplog.records if r.name == "swarmproxy.lifecycle"]
    assert events[:2] == ["node kept", "node not registered"]


async def test_the_policy_is_swapped_and_a_bad_config_keeps_everything(
    harness: Harness,
) -> None:
    assert not harness.app[POLICY].policy.enabled
    assert await harness.reload(config(node(1), node(2), policy={"allow_privileged": False}))
    in_force = harness.app[POLICY].policy
    assert in_force.rules.allow_privileged is False
    assert not await harness.reload(ConfigError("policy.allow_privileged", "must be true"))
    assert harness.app[POLICY].policy is in_force
    assert harness.cluster.calls == []
    # The next reload compares with the config last applied, not the refused one.
    assert await harness.reload(config(node(1)))
    assert harness.cluster.calls == ["unregister tcp://10.0.0.2:2375"]
    assert not harness.app[POLICY].policy.enabled


async def test_signals_that_come_together_are_served_by_one_reload(harness: Harness) -> None:
    harness.next = config(node(1), node(2), node(3))
    for _ in range(5):
        harness.reloader.request()
    for _ in range(20):
        await asyncio.sleep(0)
    assert harness.cluster.calls == ["register node-3"]
