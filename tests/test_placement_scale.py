"""Placement over more nodes than this machine can run daemons for: a simulation, with
nodes whose client calls nothing."""

from __future__ import annotations

import asyncio

import pytest

from swarmproxy.cluster import Cluster
from swarmproxy.cluster.dry import DryNodeClient
from swarmproxy.cluster.images import index_key
from swarmproxy.cluster.node import Node
from swarmproxy.scheduler import SchedulingRequest, make_scheduler, weighing
from swarmproxy.scheduler.load import Reservation
from swarmproxy.scheduler.weighing import Weight
from swarmproxy.storage import MemoryStorage


async def simulated(count: int, strategy: str) -> Cluster:
    """`count` ready nodes, every one holding busybox."""
    nodes = [
        Node(f"sim-{i}", f"tcp://10.0.{i // 200}.{i % 200}:2375", client_class=DryNodeClient)
        for i in range(count)
    ]
    storage = MemoryStorage()
    key = index_key("busybox")
    assert key is not None
    for node in nodes:
        node.health.record_success()
        await storage.store_image(key, "sha256:" + "1" * 64, node.address)
    return Cluster(nodes, storage, make_scheduler(strategy, storage))


async def test_every_holder_of_the_image_is_preferred_however_many_nodes() -> None:
    # Far more holders than the image history's limit of pairs beyond one per holder.
    cluster = await simulated(120, "round-robin")
    nodes = cluster.nodes
    request = SchedulingRequest(config={"Image": "busybox"})

    placement = await cluster.place(request)
    assert [v.node.name for v in placement.verdicts if v.unpreferred] == []
    # The rotation goes over every node, not only over those the history named last.
    chosen = {(await cluster.schedule(request)).name for _ in range(len(nodes))}
    assert chosen == {node.name for node in nodes}


@pytest.mark.parametrize("strategy", ["round-robin", "spread", "binpack"])
async def test_a_decision_does_not_hand_the_event_loop_over(strategy: str) -> None:
    """A request with nothing for the filters to look up is decided at once: other tasks
    do not run in the middle of it (nor take their time out of it)."""
    cluster = await simulated(50, strategy)
    others_ran = 0

    async def other_task() -> None:
        nonlocal others_ran
        while True:
            await asyncio.sleep(0)
            others_ran += 1

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    others_ran = 0
    try:
        for _ in range(20):
            await cluster.schedule(SchedulingRequest(config={"Image": "busybox"}))
        assert others_ran == 0
    finally:
        other.cancel()


async def test_spread_weighs_only_the_nodes_whose_load_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = await simulated(1000, "spread")
    request = SchedulingRequest(config={"Image": "busybox"})
    weighed: list[Node] = []

    def counted(node: Node, wanted: Reservation) -> Weight:
        weighed.append(node)
        return weigh(node, wanted)

    weigh = weighing.weigh
    monkeypatch.setattr(weighing, "weigh", counted)
    chosen = await cluster.schedule(request)
    assert len(weighed) == 1000
    for i in range(10):
        weighed.clear()
        chosen.load.created(f"new-{i}", Reservation())
        following = await cluster.schedule(request)
        assert weighed == [chosen] and following is not chosen
        chosen = following
