"""`Cluster.provide_image`, as a Python library, against the real nodes: an image streamed
from the node that holds it to the node that needs it (no registry involved), else pulled
there, else the daemon's own 404; one transfer per node and image at a time; a bounded
memory whatever the image's size."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from aiohttp import ClientResponse, web

from swarmproxy.cluster import Cluster, Node
from swarmproxy.cluster.creation import registry_auth
from swarmproxy.cluster.image_transfer import CopyFailed, InFlight, copy_image
from swarmproxy.errors import NotFound
from swarmproxy.local_nodes import IMAGE, DockerNode
from tests.rig.images import unique_image, unique_parts
from tests.rig.library import library_cluster
from tests.rig.registry import Registry
from tests.rig.simulated import simulated_node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MB = 1024 * 1024


@pytest.fixture
async def library(nodes: list[DockerNode]) -> AsyncIterator[Cluster]:
    async with library_cluster(nodes) as cluster:
        yield cluster


@pytest.fixture
def made(nodes: list[DockerNode]) -> Iterator[list[str]]:
    """The images a test makes (references or IDs), removed from every node afterwards."""
    refs: list[str] = []
    yield refs
    for node in nodes:
        for ref in refs:
            assert ref != IMAGE
            node.docker("rmi", "-f", ref, check=False)


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start() as started:
        yield started


def closed_registry() -> str:
    """A registry address on loopback where nothing listens: a pull from it fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def image_id(node: DockerNode, ref: str) -> str | None:
    found = node.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def events(node: DockerNode, action: str, since: float) -> list[str]:
    """The image IDs of the daemon's own `action` events (`save`, `load`) since `since`."""
    listed = node.docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        "type=image",
        "--filter",
        f"event={action}",
        "--format",
        "{{.ID}}",
    )
    return listed.stdout.split()


def load_on(node: DockerNode, made: list[str], tag: str) -> str:
    """A unique image loaded straight into one node, behind the cluster's back; its ID."""
    tar, expected = unique_image(tag)
    made.append(expected)
    node.docker("load", input=tar)
    return expected


class Requests:
    """What the library asks of each node, as `METHOD /path`, seen in its node client."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
        self.seen: dict[str, list[str]] = {node.name: [] for node in cluster.nodes}
        for node in cluster.nodes:
            monkeypatch.setattr(node.client, "request", self._recording(node))

    def _recording(self, node: Node) -> Callable[..., AbstractAsyncContextManager[ClientResponse]]:
        request = node.client.request

        @contextlib.asynccontextmanager
        async def recorded(method: str, path: str, **kwargs: Any) -> AsyncIterator[ClientResponse]:
            self.seen[node.name].append(f"{method} {path.partition('?')[0]}")
            async with request(method, path, **kwargs) as response:
                yield response

        return recorded

    def clear(self) -> None:
        for seen in self.seen.values():
            seen.clear()


async def test_an_image_is_streamed_from_its_holder_without_a_registry(
    library: Cluster, nodes: list[DockerNode], made: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its registry is a closed port: had the cluster tried to pull it, that would fail.
    ref = f"{closed_registry()}/xfer/copied:v1"
    made.append(ref)
    expected = load_on(nodes[0], made, ref)
    requests = Requests(monkeypatch, library)
    node_1, node_2, node_3 = library.nodes
    since = time.time()

    await library.provide_image(node_2, ref)

    assert image_id(nodes[1], ref) == expected  # the same image, under its tag
    assert image_id(nodes[2], ref) is None
    assert events(nodes[0], "save", since) == [expected]
    assert events(nodes[1], "load", since) == [expected]
    assert f"GET /images/{ref}/get" in requests.seen["node-1"]
    assert "POST /images/load" in requests.seen["node-2"]
    record = await library.storage.retrieve_image(ref)
    assert record is not None and record.last_id == expected
    assert record.nodes == {node_1.address, node_2.address}

    # Held now: one inspect of that node, nothing else.
    requests.clear()
    await library.provide_image(node_2, ref)
    assert requests.seen == {"node-1": [], "node-2": [f"GET /images/{ref}/json"], "node-3": []}

    # An image ID is fetched by ID: the tar carries no tag, and none is made.
    requests.clear()
    await library.provide_image(node_3, expected)
    assert image_id(nodes[2], expected) == expected
    assert image_id(nodes[2], ref) is None
    # From whichever holder the index names first.
    asked = [*requests.seen["node-1"], *requests.seen["node-2"]]
    assert f"GET /images/{expected}/get" in asked
    by_id = await library.storage.retrieve_image(expected)
    assert by_id is not None and node_3.address in by_id.nodes


async def test_a_private_image_is_pulled_with_the_credentials_given(
    library: Cluster, nodes: list[DockerNode], made: list[str], registry: Registry
) -> None:
    parts = unique_parts()
    registry.add_image("xfer/private", "v1", parts)
    registry.credentials = ("robot", "s3cret")
    ref = f"{registry.address}/xfer/private:v1"
    made.append(ref)
    node_2 = library.nodes[1]

    with pytest.raises(NotFound) as refused:
        await library.provide_image(node_2, ref)
    assert (refused.value.status, refused.value.message) == (404, f"No such image: {ref}")
    assert image_id(nodes[1], ref) is None

    auth = registry_auth(
        {"username": "robot", "password": "s3cret", "serveraddress": registry.address}
    )
    await library.provide_image(node_2, ref, auth=auth)
    assert image_id(nodes[1], ref) == parts.id
    assert [image_id(n, ref) for n in (nodes[0], nodes[2])] == [None, None]
    record = await library.storage.retrieve_image(ref)
    assert record is not None and record.nodes == {node_2.address}
    assert record.last_id == parts.id


async def test_a_stalled_pull_fails_after_the_inactivity_timeout(
    library: Cluster, registry: Registry
) -> None:
    registry.add_image("xfer/stuck", "v1", unique_parts())
    registry.stall("xfer/stuck")
    ref = f"{registry.address}/xfer/stuck:v1"
    started = time.monotonic()
    with pytest.raises(NotFound) as silent:
        await library.provide_image(library.nodes[1], ref, inactivity=1.5)
    assert 1.5 <= time.monotonic() - started < 30
    assert silent.value.message == f"No such image: {ref}"


async def test_a_stalled_holder_gives_way_to_the_next(
    library: Cluster, nodes: list[DockerNode], made: list[str]
) -> None:
    ref = f"{closed_registry()}/xfer/stalled:v1"
    made.append(ref)
    tar, expected = unique_image(ref)
    made.append(expected)
    for node in (nodes[0], nodes[2]):
        node.docker("load", input=tar)
    node_1, node_2, node_3 = library.nodes
    # Indexed on node-1 last, so node-1 is the first holder asked.
    await library.record_image(node_3, ref)
    await library.record_image(node_1, ref)
    since = time.time()
    with stopped(nodes[0]):
        started = time.monotonic()
        await library.provide_image(node_2, ref, inactivity=2)
        took = time.monotonic() - started
    assert took >= 2
    assert image_id(nodes[1], ref) == expected
    assert events(nodes[2], "save", since) == [expected]
    assert events(nodes[1], "load", since) == [expected]


@contextlib.contextmanager
def stopped(node: DockerNode) -> Iterator[None]:
    """The node's daemon frozen: it takes connections, and says nothing."""
    os.kill(node.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(node.pid, signal.SIGCONT)


async def test_a_tag_rebuilt_elsewhere_brings_the_newest_image(
    library: Cluster, nodes: list[DockerNode], made: list[str]
) -> None:
    ref = f"{closed_registry()}/xfer/rebuilt:v1"
    made.append(ref)
    older = load_on(nodes[1], made, ref)
    newer = load_on(nodes[0], made, ref)
    node_1, node_2, _ = library.nodes
    await library.record_image(node_2, ref)
    await library.record_image(node_1, ref)  # written last: the newest under the tag

    # Neither way can bring the newest: the node keeps what it holds under the tag, which
    # is what its daemon would use (not a false "No such image").
    with stopped(nodes[0]):
        await library.provide_image(node_2, ref, inactivity=1)
    assert image_id(nodes[1], ref) == older

    await library.provide_image(node_2, ref)
    assert image_id(nodes[1], ref) == newer
    record = await library.storage.retrieve_image(ref)
    assert record is not None and record.last_id == newer
    assert record.nodes == {node_1.address, node_2.address}


async def test_a_holder_that_breaks_off_is_blamed_and_the_target_untouched(
    library: Cluster, nodes: list[DockerNode]
) -> None:
    tar, expected = unique_image("xfer/broken:v1")

    async def half_then_gone(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        await response.write(tar[: len(tar) // 2])
        await asyncio.sleep(0.2)
        assert request.transport is not None
        request.transport.abort()
        return response

    target = library.nodes[1]
    async with simulated_node("node-9", half_then_gone) as holder:
        with pytest.raises(CopyFailed) as failed:
            await copy_image(
                holder, target, "/images/xfer/broken:v1/get", "/images/load?quiet=1", 10
            )
    assert failed.value.node is holder
    assert "node-9" in str(failed.value)
    assert target.health.failures == 0  # the cut upload is not the target's fault
    assert image_id(nodes[1], expected) is None


async def test_callers_for_one_node_and_image_share_one_transfer(
    library: Cluster, nodes: list[DockerNode], made: list[str]
) -> None:
    ref = f"{closed_registry()}/xfer/shared:v1"
    made.append(ref)
    expected = load_on(nodes[0], made, ref)
    since = time.time()
    node_2 = library.nodes[1]

    await asyncio.gather(*(library.provide_image(node_2, ref) for _ in range(4)))

    assert image_id(nodes[1], ref) == expected
    assert events(nodes[0], "save", since) == [expected]
    assert events(nodes[1], "load", since) == [expected]


def _status_kb(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 sets the peak resident size (VmHWM) back to the current one.
    pathlib.Path("/proc/self/clear_refs").write_text("5")


async def test_a_large_image_streams_through_in_bounded_memory(
    library: Cluster, nodes: list[DockerNode], made: list[str]
) -> None:
    ref = f"xfer/large-{uuid.uuid4().hex[:8]}:v1"
    container = f"xfer-large-{uuid.uuid4().hex[:8]}"
    made.append(ref)
    # 100 MB that does not compress, made on node-1 itself: this process never holds it.
    dd = ["dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=100"]
    nodes[0].docker("run", "--name", container, IMAGE, *dd, timeout=120)
    try:
        nodes[0].docker("commit", container, ref, timeout=120)
    finally:
        nodes[0].docker("rm", "-f", container, check=False)
    size = int(nodes[0].docker("image", "inspect", "--format", "{{.Size}}", ref).stdout)
    assert size > 100 * MB

    _reset_peak()
    before = _status_kb("VmHWM")
    await library.provide_image(library.nodes[1], ref)
    grown = (_status_kb("VmHWM") - before) * 1024

    assert image_id(nodes[1], ref) == image_id(nodes[0], ref)
    assert grown < 32 * MB, f"peak memory grew by {grown / MB:.1f} MB for {size / MB:.0f} MB"

    # The meter is not blind: the same tar read whole shows.
    _reset_peak()
    before = _status_kb("VmHWM")
    _, whole = await library.nodes[0].client.read("GET", f"/images/{ref}/get")
    assert len(whole) > 100 * MB
    assert (_status_kb("VmHWM") - before) * 1024 > 100 * MB


async def test_in_flight_work_runs_once_and_only_while_someone_awaits_it() -> None:
    flight = InFlight()
    runs: list[str] = []
    go_on = asyncio.Event()

    async def work() -> None:
        runs.append("ran")
        await go_on.wait()

    callers = [asyncio.create_task(flight.join("k", work)) for _ in range(3)]
    await asyncio.sleep(0.01)
    callers[0].cancel()  # one leaves: the others still get the work done
    go_on.set()
    await asyncio.gather(*callers[1:])
    assert runs == ["ran"]

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("shared")

    outcomes = await asyncio.gather(
        flight.join("k", fails), flight.join("k", fails), return_exceptions=True
    )
    assert [str(o) for o in outcomes] == ["shared", "shared"]

    ended = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    lone = asyncio.create_task(flight.join("k", forever))
    await asyncio.sleep(0.01)
    lone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await lone
    # The last caller left: the work is cancelled, and a new caller starts afresh.
    await asyncio.wait_for(flight.join("k", work), 1)
    await asyncio.wait_for(ended.wait(), 1)
    assert runs == ["ran", "ran"]
