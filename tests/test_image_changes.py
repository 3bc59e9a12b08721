"""Changes made on every node (rmi, tag) when one node fails part-way: what the others did
is indexed and reported, and the failing node is named. The failing node is SIMULATED (a
daemon that drops the connection on purpose); real daemons cannot be made to do that."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web

from swarmproxy.cluster import Cluster, Node
from swarmproxy.errors import DockerError
from swarmproxy.scheduler import make_scheduler
from swarmproxy.storage import MemoryStorage
from tests.rig.simulated import simulated_nodes

IMAGE_ID = "sha256:" + "ab" * 32


async def holding_node(request: web.Request) -> web.StreamResponse:
    """A node that holds x:1 and does what it is asked."""
    if request.method == "DELETE":
        return web.json_response([{"Untagged": "x:1"}, {"Deleted": IMAGE_ID}])
    if request.path.endswith("/tag"):
        return web.Response(status=201)
    return web.json_response({"Id": IMAGE_ID, "RepoTags": ["x:1", "y:2"], "RepoDigests": []})


async def dropping_node(request: web.Request) -> web.StreamResponse:
    """A node whose connection breaks in the middle of every answer."""
    assert request.transport is not None
    request.transport.close()
    return web.Response()


async def refusing_node(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": "conflict: image is being used"}, status=409)


async def missing_node(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": "No such image: x:1"}, status=404)


async def indexed_cluster(nodes: Sequence[Node]) -> Cluster:
    """A cluster of ready nodes, each indexed as holding x:1."""
    for node in nodes:
        node.health.record_success()
    cluster = Cluster(nodes, MemoryStorage(), make_scheduler("round-robin"))
    for node in nodes:
        await cluster.storage.store_image("x:1", IMAGE_ID, node.address)
    return cluster


@pytest.fixture
async def two_nodes_one_dropping() -> AsyncIterator[list[Node]]:
    async with simulated_nodes(holding_node, dropping_node) as nodes:
        yield nodes


async def test_rmi_reports_what_was_removed_when_a_node_drops(
    two_nodes_one_dropping: list[Node],
) -> None:
    nodes = two_nodes_one_dropping
    cluster = await indexed_cluster(nodes)
    with pytest.raises(DockerError) as failed:
        await cluster.remove_image("x:1")
    assert failed.value.status == 502
    message = failed.value.message
    assert "node node-2" in message
    assert message.endswith(f"done on node-1: Untagged: x:1, Deleted: {IMAGE_ID}")
    record = await cluster.storage.retrieve_image("x:1")
    # node-1 is forgotten; node-2 may still hold it, so it stays.
    assert record is not None and record.nodes == {nodes[1].address}


async def test_tag_reports_where_it_was_tagged_when_a_node_refuses() -> None:
    async with simulated_nodes(holding_node, refusing_node, missing_node) as nodes:
        cluster = await indexed_cluster(nodes)
        with pytest.raises(DockerError) as failed:
            await cluster.tag_image("x:1", "y", "2")
        assert failed.value.status == 409
        assert failed.value.message == (
            "conflict: image is being used (on node-2); done on node-1: tagged y:2"
        )
        record = await cluster.storage.retrieve_image("y:2")
        assert record is not None and record.nodes == {nodes[0].address}


async def test_rmi_that_no_node_holds_is_the_daemons_404() -> None:
    async with simulated_nodes(missing_node, missing_node) as nodes:
        cluster = await indexed_cluster(nodes)
        with pytest.raises(DockerError) as failed:
            await cluster.remove_image("x:1")
        assert (failed.value.status, failed.value.message) == (404, "No such image: x:1")
