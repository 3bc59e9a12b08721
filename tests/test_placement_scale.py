"""Placement over more nodes than this machine can run daemons for: a simulation, with
nodes whose client calls nothing."""

from __future__ import annotations

from swarmproxy.cluster import Cluster
from swarmproxy.cluster.dry import DryNodeClient
from swarmproxy.cluster.images import index_key
from swarmproxy.cluster.node import Node
from swarmproxy.scheduler import SchedulingRequest, make_scheduler
from swarmproxy.storage import MemoryStorage


async def test_every_holder_of_the_image_is_preferred_however_many_nodes() -> None:
    # Far more holders than the image history's limit of pairs beyond one per holder.
    nodes = [
        Node(f"sim-{i}", f"tcp://10.0.{i // 200}.{i % 200}:2375", client_class=DryNodeClient)
        for i in range(120)
    ]
    for node in nodes:
        node.health.record_success()
    storage = MemoryStorage()
    key = index_key("busybox")
    assert key is not None
    for node in nodes:
        await storage.store_image(key, "sha256:" + "1" * 64, node.address)
    cluster = Cluster(nodes, storage, make_scheduler("round-robin", storage))
    request = SchedulingRequest(config={"Image": "busybox"})

    placement = await cluster.place(request)
    assert [v.node.name for v in placement.verdicts if v.unpreferred] == []
    # The rotation goes over every node, not only over those the history named last.
    chosen = {(await cluster.schedule(request)).name for _ in range(len(nodes))}
    assert chosen == {node.name for node in nodes}
