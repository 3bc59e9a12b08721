"""The status machine, the default healer and the shared healing decisions (no daemons:
nodes here are never called)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from swarmproxy.cluster import Cluster, Node
from swarmproxy.cluster.healer import BackoffHealer, load_healer
from swarmproxy.cluster.healing import NodeHealing
from swarmproxy.cluster.health import NodeHealth, NodeStatus
from swarmproxy.config import HealthConfig
from swarmproxy.scheduler import make_scheduler
from swarmproxy.storage import MemoryStorage, NodeRecord
from tests.rig.simulated import simulated_node


class FlatHealer:
    """The seed's healer: one minute, whatever the count."""

    def handle_error(self, node: NodeRecord) -> float:
        return 60.0


def test_backoff_doubles_from_five_seconds_to_five_minutes() -> None:
    healer = BackoffHealer()
    waits = [healer.handle_error(NodeRecord("tcp://n:1", failures=n)) for n in range(0, 10)]
    assert waits == [0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert healer.handle_error(NodeRecord("tcp://n:1", failures=10_000)) == 300.0


def test_a_healer_is_named_by_import_path() -> None:
    assert isinstance(load_healer(""), BackoffHealer)
    # Imported by its path, as the config names it: a class of its own module object.
    flat = load_healer("tests.test_healing:FlatHealer")
    assert flat.handle_error(NodeRecord("tcp://n:1", failures=1)) == 60.0
    for bad in ("nocolon", "tests.test_healing:Missing", "no.such.module:X"):
        with pytest.raises(ValueError):
            load_healer(bad)


def test_the_status_machine() -> None:
    health = NodeHealth()
    assert health.status is NodeStatus.WAITING
    health.record_failure("refused")
    assert health.status is NodeStatus.WAITING  # never answered yet
    health.record_success()
    assert health.status is NodeStatus.READY and health.ready
    health.record_failure("reset")
    assert health.status is NodeStatus.RETRY and health.callable and not health.ready
    health.disabled_until = time.time() + 30
    assert health.status is NodeStatus.DISABLED and not health.callable
    assert health.describe().startswith("temporarily disabled until ")
    assert health.describe().endswith("after 1 failures: reset")
    health.healing_until = time.time() + 5
    assert health.status is NodeStatus.HEALING and not health.callable
    health.healing_until = 0.0
    health.record_success()
    assert health.status is NodeStatus.READY
    assert health.failures == 0 and health.disabled_until == 0.0


def test_only_the_first_success_after_failures_is_told() -> None:
    told: list[tuple[bool, str]] = []
    health = NodeHealth(listener=lambda ok, error: told.append((ok, error)))
    health.record_success()
    health.record_success()
    health.record_failure("refused")
    health.record_success()
    health.record_success()
    assert told == [(True, ""), (False, "refused"), (True, "")]


async def registered(storage: MemoryStorage) -> Node:
    node = Node("node-1", "tcp://127.0.0.1:9")
    await storage.store_node(NodeRecord(node.address, node.name))
    return node


async def test_a_failure_is_shared_and_disables_the_node() -> None:
    storage = MemoryStorage()
    node = await registered(storage)
    healing = NodeHealing(storage, BackoffHealer())
    await healing.decide(node, ok=False, error="connection refused")
    record = await storage.retrieve_node(node.address)
    assert record is not None
    assert (record.failures, record.last_error) == (1, "connection refused")
    assert 4 < record.disabled_until - time.time() <= 5
    assert record.healing.locked_until == 0.0  # the lock was given back
    assert node.health.status is NodeStatus.DISABLED

    await healing.decide(node, ok=False, error="connection refused")
    record = await storage.retrieve_node(node.address)
    assert record is not None and record.failures == 2
    assert 9 < record.disabled_until - time.time() <= 10

    await healing.decide(node, ok=True)
    record = await storage.retrieve_node(node.address)
    assert record is not None
    assert (record.failures, record.disabled_until) == (0, 0.0)
    assert record.last_success_at > 0
    assert node.health.status is NodeStatus.READY
    await node.client.close()


async def test_a_node_locked_by_another_replica_is_left_to_it() -> None:
    storage = MemoryStorage()
    node = await registered(storage)
    await node.client.close()
    assert await storage.lock_node_for_healing(node.address, True, 30)
    await NodeHealing(storage, BackoffHealer()).decide(node, ok=False, error="reset")
    record = await storage.retrieve_node(node.address)
    assert record is not None and record.failures == 0


async def test_monitoring_starts_and_stops_from_the_library() -> None:
    """A SIMULATED node (an aiohttp server answering /_ping) pinged each interval while
    monitoring runs, and no more once it is stopped."""
    pings: list[float] = []

    async def daemon(request: web.Request) -> web.StreamResponse:
        if request.path == "/_ping":
            pings.append(time.monotonic())
            return web.Response(text="OK")
        if request.path == "/version":
            return web.json_response({"ApiVersion": "1.41", "MinAPIVersion": "1.12"})
        return web.json_response({"Containers": 0})

    async with simulated_node("node-1", daemon) as node:
        cluster = Cluster(
            [node], MemoryStorage(), make_scheduler("round-robin"), HealthConfig(interval=0.1)
        )
        await cluster.start()
        try:
            assert node.health.status is NodeStatus.READY
            await asyncio.sleep(0.35)
            assert len(pings) >= 3
            await cluster.stop_monitoring()
            stopped = len(pings)
            await asyncio.sleep(0.3)
            assert len(pings) == stopped
            cluster.start_monitoring()
            await asyncio.sleep(0.25)
            assert len(pings) > stopped
        finally:
            await cluster.close()
