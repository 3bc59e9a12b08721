"""The cluster core as a Python library, over real test nodes, as the library tests use it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from swarmproxy.cluster import Cluster, Node
from swarmproxy.config import HealthConfig
from swarmproxy.local_nodes import DockerNode
from swarmproxy.scheduler import Scheduler, make_scheduler
from swarmproxy.storage import MemoryStorage, Storage


@asynccontextmanager
async def library_cluster(
    nodes: Sequence[DockerNode],
    scheduler: Scheduler | None = None,
    *,
    interval: float = 60,
    storage: Storage | None = None,
) -> AsyncIterator[Cluster]:
    """A started Cluster over `nodes` on `storage` (the embedded one unless given; round
    robin unless `scheduler` is given), closed on the way out. Its pings come every
    `interval` seconds: seldom, so that a node's health during a test is what the test's
    own calls made it."""
    cluster = Cluster(
        [Node(n.name, n.tcp_address) for n in nodes],
        storage or MemoryStorage(),
        scheduler or make_scheduler("round-robin"),
        HealthConfig(interval=interval),
    )
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.close()
