"""`Cluster.create_container` and dry mode, as a Python library, against the real nodes."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from swarmproxy.cluster import Cluster, Node
from swarmproxy.cluster.creation import PullOptions
from swarmproxy.cluster.dry import DryModeCall
from swarmproxy.errors import DockerError, NoNodeAvailable
from swarmproxy.local_nodes import IMAGE, DockerNode
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.scheduler.round_robin import RoundRobin
from tests.rig.images import unique_parts
from tests.rig.library import library_cluster
from tests.rig.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SLEEPER = {"Image": IMAGE, "Cmd": ["sleep", "300"]}


class Recording(RoundRobin):
    """Round robin that keeps the scheduler options each placement was given."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.options: list[object] = []

    async def select(self, nodes: Sequence[Node], request: SchedulingRequest) -> Node:
        self.options.append(request.options)
        return await super().select(nodes, request)


@pytest.fixture
async def library(nodes: list[DockerNode]) -> AsyncIterator[Cluster]:
    try:
        async with library_cluster(nodes, Recording()) as cluster:
            yield cluster
    finally:
        for node in nodes:
            node.remove_all_containers()


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start() as started:
        yield started


def holder(nodes: list[DockerNode], container_id: str) -> str:
    (name,) = [n.name for n in nodes if container_id in n.container_ids()]
    return name


async def test_create_places_names_and_indexes(library: Cluster, nodes: list[DockerNode]) -> None:
    created = await library.create_container(SLEEPER, "lib-first", scheduler_options={"a": 1})
    assert holder(nodes, created.id) == created.node.name
    assert created.warnings == []
    assert created.body.startswith(b'{"Id":"' + created.id.encode())
    record, node = await library.locate_container("lib-first")
    assert (record.id, node) == (created.id, created.node)
    assert library.scheduler.options == [{"a": 1}]  # type: ignore[attr-defined]

    with pytest.raises(DockerError) as taken:
        await library.create_container(SLEEPER, "lib-first")
    assert taken.value.status == 409
    assert '"/lib-first" is already in use' in taken.value.message
    with pytest.raises(DockerError) as invalid:
        await library.create_container(SLEEPER, "-bad")
    assert invalid.value.status == 400


async def test_a_node_refusal_is_the_daemons_answer(library: Cluster) -> None:
    with pytest.raises(DockerError) as missing:
        await library.create_container({"Image": "nosuch/image:1"}, "lib-missing")
    assert (missing.value.status, missing.value.message) == (404, "No such image: nosuch/image:1")
    # The name went back: a create that works may take it.
    created = await library.create_container(SLEEPER, "lib-missing")
    assert (await library.locate_container("lib-missing"))[0].id == created.id


async def test_pinned_nodes(library: Cluster, nodes: list[DockerNode]) -> None:
    for _ in range(3):
        created = await library.create_container(SLEEPER, nodes=["node-2"])
        assert holder(nodes, created.id) == "node-2"
    spread = {
        (await library.create_container(SLEEPER, nodes=["node-1", nodes[2].tcp_address])).node.name
        for _ in range(2)
    }
    assert spread == {"node-1", "node-3"}

    await library.drain("node-2")
    with pytest.raises(NoNodeAvailable) as drained:
        await library.create_container(SLEEPER, nodes=["node-2"])
    assert drained.value.status == 503
    assert "node-2 (drained)" in drained.value.message
    with pytest.raises(DockerError) as unknown:
        await library.create_container(SLEEPER, nodes=["node-9"])
    assert unknown.value.status == 404


async def test_pull_options_pull_on_the_chosen_node_with_auth(
    library: Cluster, nodes: list[DockerNode], registry: Registry
) -> None:
    registry.add_image("lib/private", "v1", unique_parts())
    registry.credentials = ("robot", "s3cret")
    image = f"{registry.address}/lib/private:v1"
    config = {"Image": image, "Cmd": ["true"]}

    with pytest.raises(DockerError) as refused:
        await library.create_container(config, nodes=["node-3"], pull=PullOptions())
    assert "node-3" in refused.value.message

    auth = {"username": "robot", "password": "s3cret", "serveraddress": registry.address}
    created = await library.create_container(config, nodes=["node-3"], pull=PullOptions(auth=auth))
    assert holder(nodes, created.id) == "node-3"
    record = await library.storage.retrieve_image(image)
    assert record is not None and record.nodes == {nodes[2].tcp_address}
    # Only the chosen node pulled.
    assert nodes[0].docker("image", "inspect", image, check=False).returncode != 0


async def test_a_silent_pull_fails_after_the_inactivity_timeout(
    library: Cluster, registry: Registry
) -> None:
    registry.add_image("lib/stuck", "v1", unique_parts())
    registry.stall("lib/stuck")
    config = {"Image": f"{registry.address}/lib/stuck:v1"}
    with pytest.raises(DockerError) as silent:
        await library.create_container(config, pull=PullOptions(inactivity_timeout=1.5))
    assert "1.5" in silent.value.message or "inactiv" in silent.value.message.lower()


async def test_dry_mode_plans_without_calling_a_daemon(
    library: Cluster, nodes: list[DockerNode]
) -> None:
    real = await library.create_container(SLEEPER, "lib-real")
    before = {n.name: n.container_ids() for n in nodes}

    dry = await library.dry_mode()
    planned = [await dry.create_container(SLEEPER) for _ in range(3)]
    assert len({c.node.name for c in planned}) == 3
    named = await dry.create_container(SLEEPER, "lib-planned")
    with pytest.raises(DockerError) as taken:
        await dry.create_container(SLEEPER, "lib-real")  # the real index was copied
    assert taken.value.status == 409
    assert (await dry.locate_container("lib-planned"))[0].id == named.id

    await dry.register("tcp://10.255.255.1:2375", "planned-node", {"zone": "new"})
    assert [r.name for r in await dry.nodes_for_metadata({"zone": "new"})] == ["planned-node"]
    # An image no node holds, so every node is a candidate (the new one holds nothing).
    unheld = {"Image": "planned/app:1"}
    placed = {(await dry.create_container(unheld)).node.name for _ in range(4)}
    assert "planned-node" in placed
    with pytest.raises(DryModeCall):
        await dry.inspect_image(IMAGE)

    # Nothing of it reached the nodes or the real cluster.
    assert {n.name: n.container_ids() for n in nodes} == before
    assert await library.storage.retrieve_container(named.id) is None
    assert [n.name for n in library.nodes] == ["node-1", "node-2", "node-3"]
    assert await library.storage.retrieve_node("tcp://10.255.255.1:2375") is None
    assert await dry.stop_dry_mode() is library
    # The copy's rotation went on from the real one's, which has not moved since.
    assert (await library.create_container(SLEEPER)).node.name == planned[0].node.name
    assert (await library.locate_container("lib-real"))[0].id == real.id


def demultiplexed(stream: bytes) -> bytes:
    """The payload of a multiplexed stream (8-byte frame headers), stdout and stderr alike."""
    out, at = bytearray(), 0
    while at < len(stream):
        size = int.from_bytes(stream[at + 4 : at + 8], "big")
        out += stream[at + 8 : at + 8 + size]
        at += 8 + size
    return bytes(out)


def tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def joined(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_container_and_exec_operations(library: Cluster, nodes: list[DockerNode]) -> None:
    config = {"Image": IMAGE, "Cmd": ["sh", "-c", "echo hello; exec sleep 300"]}
    created = await library.create_container(config, "lib-ops", nodes=["node-3"])
    await library.start_container("lib-ops")
    inspected = await library.inspect_container("lib-ops")
    assert inspected["Node"]["Name"] == "node-3" and inspected["State"]["Running"]
    # The shell may not have written yet when start answers.
    for _ in range(50):
        logs = demultiplexed(await joined(library.container_logs("lib-ops")))
        if logs:
            break
        await asyncio.sleep(0.1)
    assert logs == b"hello\n"
    listed = await library.list_containers(filters={"name": ["lib-ops"]})
    assert [(c["Id"], c["Node"]["Name"]) for c in listed] == [(created.id, "node-3")]
    assert "sleep" in json.dumps(await library.top_container(created.id[:12]))

    exec_id = await library.create_exec(
        "lib-ops", {"Cmd": ["cat", "/etc/greeting"], "AttachStdout": True}
    )
    await library.put_archive("lib-ops", "/etc", tar_of("greeting", b"from the library\n"))
    assert demultiplexed(await library.start_exec(exec_id)) == b"from the library\n"
    assert (await library.inspect_exec(exec_id))["ExitCode"] == 0
    archive = await joined(library.get_archive("lib-ops", "/etc/greeting"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("greeting")
        assert member is not None and member.read() == b"from the library\n"
    exported = await joined(library.export_container("lib-ops"))
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        assert "etc/greeting" in tar.getnames()

    await library.pause_container("lib-ops")
    assert (await library.inspect_container("lib-ops"))["State"]["Paused"]
    await library.unpause_container("lib-ops")
    await library.kill_container("lib-ops", "KILL")
    assert (await library.wait_container("lib-ops"))["StatusCode"] == 137
    await library.restart_container("lib-ops", timeout=0)
    await library.stop_container("lib-ops", timeout=0)

    with pytest.raises(DockerError) as refused:
        await library.start_exec("no-such-exec")
    assert refused.value.status == 404
    await library.remove_container("lib-ops")
    assert created.id not in nodes[2].container_ids()
    assert await library.storage.retrieve_container(created.id) is None
    with pytest.raises(DockerError) as gone:
        await library.inspect_container("lib-ops")
    assert gone.value.status == 404


async def test_a_node_killed_between_attempts_is_skipped(
    nodes: list[DockerNode], crashing_node: DockerNode
) -> None:
    """The node dies after its last ping: the scheduler still takes it for ready, its
    create fails, and the container is made on another node."""
    try:
        async with library_cluster([nodes[0], crashing_node], interval=600) as cluster:
            crashing_node.crash()
            placed = [(await cluster.create_container(SLEEPER)).node.name for _ in range(2)]
            assert placed == [nodes[0].name, nodes[0].name]
            (dead,) = [n for n in cluster.nodes if n.name == "crashing"]
            assert dead.health.failures >= 1 and not dead.ready
            with pytest.raises(DockerError) as pinned:
                await cluster.create_container(SLEEPER, nodes=["crashing"])
            assert "crashing" in pinned.value.message
    finally:
        nodes[0].remove_all_containers()
