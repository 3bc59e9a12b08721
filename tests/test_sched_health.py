"""The health filter reads NodeHealth's fields itself, for speed: it must exclude exactly the
nodes that are not `Node.ready`, with the same reasons, in every state a node can be in."""

from __future__ import annotations

import itertools
import time

from swarmproxy.cluster.dry import DryNodeClient
from swarmproxy.cluster.health import NodeStatus
from swarmproxy.cluster.node import CREATION_STATUSES, Node
from swarmproxy.scheduler.base import SchedulingRequest
from swarmproxy.scheduler.filters import HealthFilter
from tests.test_filters import SimulatedCluster

# Far enough from now that no deadline passes while the test runs.
PAST, FUTURE = time.time() - 3600, time.time() + 3600


async def test_the_health_filter_excludes_exactly_the_nodes_not_ready() -> None:
    nodes = []
    states = itertools.product(
        (0, 2), (0.0, PAST), (0.0, PAST, FUTURE), (0.0, PAST, FUTURE), CREATION_STATUSES
    )
    for i, (failures, success, disabled, healing, creation) in enumerate(states):
        made = Node(f"node-{i}", f"tcp://10.0.0.{i}:2375", client_class=DryNodeClient)
        made.health.failures, made.health.last_error = failures, "connection refused"
        made.health.last_success_at = success
        made.health.disabled_until, made.health.healing_until = disabled, healing
        made.creation_status = creation
        nodes.append(made)
    # Every status is met.
    assert {n.health.status for n in nodes} == set(NodeStatus)

    judged = await HealthFilter().judge(nodes, SchedulingRequest(), SimulatedCluster())

    assert set(judged) == {n for n in nodes if not n.ready}
