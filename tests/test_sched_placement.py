"""The placement pipeline as a library, on nodes whose client calls nothing: the dry-run's
verdicts, the real decision, retries, hooks and refusals."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from swarmproxy.cluster import Cluster
from swarmproxy.cluster.dry import DryNodeClient
from swarmproxy.cluster.images import index_key
from swarmproxy.cluster.node import DISABLED, Node
from swarmproxy.errors import DockerError, NoNodeAvailable
from swarmproxy.scheduler import SchedulingRequest, make_scheduler
from swarmproxy.scheduler.load import Reservation
from swarmproxy.storage import MemoryStorage

IMAGE_ID = "sha256:" + "1" * 64


def busybox(*constraints: str, **config: Any) -> SchedulingRequest:
    return SchedulingRequest(config={"Image": "busybox", **config}, constraints=list(constraints))


async def made(strategy: str, holders: int = 4) -> Cluster:
    """Five ready nodes (node-1 to node-3 in zone a, the others in zone b) and a sixth
    that failed; the first `holders` hold busybox. node-N carries N-1 containers."""
    nodes = [
        Node(
            f"node-{i}",
            f"tcp://10.0.0.{i}:2375",
            {"zone": "a" if i <= 3 else "b"},
            client_class=DryNodeClient,
        )
        for i in range(1, 7)
    ]
    storage = MemoryStorage()
    key = index_key("busybox")
    assert key is not None
    for i, node in enumerate(nodes):
        node.health.record_success()
        for c in range(i):
            node.load.created(f"{node.name}-{c}", Reservation())
        if i < holders:
            await storage.store_image(key, IMAGE_ID, node.address)
    nodes[5].health.record_failure("connection refused")
    return Cluster(nodes, storage, make_scheduler(strategy, storage))


@pytest.fixture
async def spread() -> AsyncIterator[Cluster]:
    cluster = await made("spread")
    try:
        yield cluster
    finally:
        await cluster.close()


def verdicts(described: dict[str, Any]) -> list[tuple[str, str, str, bool, Any]]:
    return [
        (n["Name"], n["ExcludedBy"], n["Reason"], n["Preferred"], n["Score"])
        for n in described["Nodes"]
    ]


async def test_the_dry_run_gives_every_node_its_verdict_and_score(spread: Cluster) -> None:
    placement = (await spread.place(busybox("zone==a"))).describe()
    assert placement["Node"]["Name"] == "node-1"
    assert placement["Strategy"] == "spread"
    assert verdicts(placement) == [
        ("node-1", "", "", True, -0.0),
        ("node-2", "", "", True, -1.0),
        ("node-3", "", "", True, -2.0),
        ("node-4", "constraint", "zone==a: zone is b", False, None),
        ("node-5", "constraint", "zone==a: zone is b", False, None),
        ("node-6", "health", "ready for retry after 1 failures: connection refused", False, None),
    ]


async def test_nodes_without_the_image_are_set_aside_while_a_holder_takes_it(
    spread: Cluster,
) -> None:
    # node-4 and node-5 are the least loaded in zone b, but only node-4 holds the image.
    described = (await spread.place(busybox("zone==b"))).describe()
    assert described["Node"]["Name"] == "node-4"
    assert verdicts(described)[3:5] == [
        ("node-4", "", "", True, -3.0),
        ("node-5", "", "does not hold busybox", False, None),
    ]
    assert (await spread.schedule(busybox("zone==b"))).name == "node-4"


async def test_the_decision_is_the_dry_run_s_choice(spread: Cluster) -> None:
    for constraints in ((), ("zone==b",), ("node!=node-1",)):
        chosen = (await spread.place(busybox(*constraints))).chosen
        assert chosen is not None
        assert await spread.schedule(busybox(*constraints)) is chosen


async def test_a_node_that_failed_the_create_is_left_out(spread: Cluster) -> None:
    node_1 = spread.find_node("node-1")
    placement = await spread.place(busybox(), exclude=[node_1])
    assert placement.chosen is not None and placement.chosen.name == "node-2"
    assert verdicts(placement.describe())[0] == (
        "node-1",
        "retry",
        "failed this create",
        False,
        None,
    )
    assert (await spread.schedule(busybox(), exclude=[node_1])).name == "node-2"


async def test_a_hook_s_refusal_tries_the_next_node(
    spread: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    def avoid_node_1(node: Node, request: SchedulingRequest) -> None:
        if node.name == "node-1":
            raise RuntimeError("kept for other work")

    spread.add_hook("before_container_create", avoid_node_1)
    # The dry-run runs no hook.
    assert (await spread.place(busybox())).chosen is spread.find_node("node-1")
    with caplog.at_level(logging.INFO, "swarmproxy.cluster"):
        assert (await spread.schedule(busybox())).name == "node-2"
    placed = [r for r in caplog.records if r.getMessage() == "placed"]
    assert [r.__dict__["fields"]["excluded"] for r in placed] == ["node-1:hook,node-6:health"]


async def test_the_placed_line_names_no_exclusion_as_a_dash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = await made("round-robin")
    cluster.find_node("node-6").health.record_success()
    try:
        with caplog.at_level(logging.INFO, "swarmproxy.cluster"):
            await cluster.schedule(busybox())
    finally:
        await cluster.close()
    placed = [r for r in caplog.records if r.getMessage() == "placed"]
    assert [r.__dict__["fields"]["excluded"] for r in placed] == ["-"]


async def test_refusals_name_each_filter_and_the_nodes_it_excluded(spread: Cluster) -> None:
    with pytest.raises(DockerError) as refused:
        await spread.schedule(busybox("zone==c"))
    assert refused.value.status == 409
    assert refused.value.message == (
        "no node can take the container: constraint excluded node-1 (zone==c: zone is a), "
        "node-2 (zone==c: zone is a), node-3 (zone==c: zone is a), node-4 (zone==c: zone "
        "is b), node-5 (zone==c: zone is b); health excluded node-6 (ready for retry after "
        "1 failures: connection refused)"
    )
    for node in spread.nodes:
        node.creation_status = DISABLED
    with pytest.raises(NoNodeAvailable):
        await spread.schedule(busybox())


async def test_round_robin_goes_over_the_candidates_in_address_order() -> None:
    cluster = await made("round-robin", holders=6)
    try:
        first = [(await cluster.schedule(busybox())).name for _ in range(6)]
        # Fewer candidates: the rotation goes on over those.
        then = [(await cluster.schedule(busybox("zone==a"))).name for _ in range(3)]
    finally:
        await cluster.close()
    assert first == ["node-1", "node-2", "node-3", "node-4", "node-5", "node-1"]
    assert then == ["node-1", "node-2", "node-3"]


async def test_pinned_nodes_and_repeated_ones(spread: Cluster) -> None:
    placement = await spread.place(busybox(), nodes=["node-3", "node-2", "node-3"])
    assert placement.chosen is spread.find_node("node-2")
    assert [v.node.name for v in placement.verdicts] == ["node-3", "node-2"]


async def test_an_image_the_index_does_not_know_prefers_no_node(spread: Cluster) -> None:
    placement = await spread.place(SchedulingRequest(config={"Image": "alpine"}))
    assert [v.node.name for v in placement.verdicts if v.unpreferred] == []
    assert placement.chosen is spread.find_node("node-1")
