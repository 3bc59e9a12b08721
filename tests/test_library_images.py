"""The cluster core as a Python library: its image calls against the real nodes, and the
image index they keep (nodes, last node and ID, digest, history) checked after each."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterator

import pytest

from swarmproxy.cluster import Cluster
from swarmproxy.errors import DockerError
from swarmproxy.local_nodes import IMAGE, DockerNode, busybox_rootfs_tar
from tests.rig.images import unique_image, unique_parts
from tests.rig.library import library_cluster
from tests.rig.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def stream(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def drain(broadcast: object) -> list[dict[str, object]]:
    await broadcast.start()  # type: ignore[attr-defined]
    try:
        return [json.loads(line) async for line in broadcast]  # type: ignore[attr-defined]
    finally:
        await broadcast.close()  # type: ignore[attr-defined]


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start() as started:
        yield started


@pytest.fixture
async def library(nodes: list[DockerNode]) -> AsyncIterator[Cluster]:
    try:
        async with library_cluster(nodes) as cluster:
            yield cluster
    finally:
        for node in nodes:
            for ref in node.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
                if ref != IMAGE:
                    node.docker("rmi", "-f", ref, check=False)


async def test_load_tag_inspect_and_remove_keep_the_index_true(library: Cluster) -> None:
    tar, expected = unique_image("lib:v1")
    messages = await drain(library.load_image(stream(tar)))
    assert {m["id"] for m in messages if "id" in m} == {"node-1", "node-2", "node-3"}
    assert [m for m in messages if "id" not in m] == [{"stream": "Loaded image: lib:v1\n"}]
    everywhere = {n.address for n in library.nodes}

    record = await library.storage.retrieve_image("lib:v1")
    assert record is not None
    assert record.nodes == everywhere
    assert record.last_id == expected
    assert record.last_node in everywhere
    by_id = await library.storage.retrieve_image(expected)
    assert by_id is not None and by_id.nodes == everywhere

    tagged = await library.tag_image("lib:v1", "lib", "v2")
    assert len(tagged) == 3
    assert (await library.inspect_image("lib:v2"))["Id"] == expected
    assert len(await library.image_history("lib:v2")) == 1
    listed = [i for i in await library.list_images() if i["Id"] == expected]
    assert listed[0]["Nodes"] == ["node-1", "node-2", "node-3"]
    assert sorted(listed[0]["RepoTags"]) == ["lib:v1", "lib:v2"]

    assert await library.remove_image("lib:v1") == [{"Untagged": "lib:v1"}]
    assert await library.storage.retrieve_image("lib:v1") is None
    removed = await library.remove_image(expected)
    assert removed[:2] == [{"Untagged": "lib:v2"}, {"Deleted": expected}]
    assert await library.storage.retrieve_image("lib:v2") is None
    assert await library.storage.retrieve_image(expected) is None
    with pytest.raises(DockerError) as missing:
        await library.inspect_image(expected)
    assert missing.value.status == 404


async def test_pull_records_the_digest_and_push_goes_out(
    library: Cluster, registry: Registry
) -> None:
    parts = unique_parts()
    expected = parts.id
    digest = registry.add_image("lib/pulled", "v1", parts)
    image = f"{registry.address}/lib/pulled"
    messages = await drain(library.pull_image(image, "v1", nodes=library.nodes[:2]))
    assert any(str(m.get("status", "")).startswith("Status: Downloaded") for m in messages)

    record = await library.storage.retrieve_image(f"{image}:v1")
    assert record is not None
    assert record.nodes == {n.address for n in library.nodes[:2]}
    assert record.last_id == expected
    assert record.last_digest == digest
    assert {(h.node, h.image_id) for h in record.history} == {
        (n.address, expected) for n in library.nodes[:2]
    }
    by_digest = await library.storage.retrieve_image(f"{image}@{digest}")
    assert by_digest is not None and by_digest.last_id == expected

    await library.tag_image(f"{image}:v1", f"{registry.address}/lib/again", "v2")
    async with library.push_image(f"{registry.address}/lib/again", "v2") as (node, response):
        assert node in library.nodes[:2]
        assert response.status == 200
        await response.read()
    assert "v2" in registry.manifests("lib/again")


async def test_import_build_and_commit_are_indexed_where_they_happened(
    library: Cluster,
) -> None:
    imported = await drain(
        library.import_image(stream(busybox_rootfs_tar()), params=[("repo", "lib-imported")])
    )
    assert len([m for m in imported if str(m.get("status", "")).startswith("sha256:")]) == 3
    record = await library.storage.retrieve_image("lib-imported:latest")
    assert record is not None and len(record.nodes) == 3

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = b"FROM busybox\nRUN echo built > /b.txt\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    async with library.build_image(stream(context.getvalue()), [("t", "lib-built:v1")]) as out:
        output = [json.loads(line) async for line in out.lines]
        built_on = out.node
    assert any("Successfully tagged lib-built:v1" in str(m.get("stream", "")) for m in output)
    record = await library.storage.retrieve_image("lib-built:v1")
    assert record is not None and record.nodes == {built_on.address}

    async with built_on.client.request(
        "POST",
        "/containers/create",
        data=json.dumps({"Image": "lib-built:v1", "Cmd": ["true"]}),
        headers={"Content-Type": "application/json"},
    ) as response:
        container_id = (await response.json())["Id"]
    await library.storage.store_container(container_id, built_on.address)
    answer = await library.commit_container(container_id, [("repo", "lib-committed")])
    assert answer.response.status == 201
    committed = json.loads(answer.body)["Id"]
    record = await library.storage.retrieve_image("lib-committed:latest")
    assert record is not None and record.last_id == committed
    assert record.nodes == {built_on.address}
    await built_on.client.json("DELETE", f"/containers/{container_id}?force=1")
