"""The storage contract: every backend passes the same tests.

`storage` runs each contract test against MemoryStorage and against RedisStorage on three
real Redis deployments: one redis-server, a 3-master Redis Cluster, and a master with a
replica behind a sentinel (each started once per session; each test under its own key
prefix).
"""

from __future__ import annotations

import asyncio
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from swarmproxy.storage import (
    CHANGE_LOG_LIMIT,
    IMAGE_HISTORY_LIMIT,
    AmbiguousPrefix,
    ChangeLog,
    ContainerRecord,
    HealingData,
    ImageHistory,
    MemoryStorage,
    NodeRecord,
    Storage,
    StorageError,
    open_storage,
)
from swarmproxy.storage.redis import RedisStorage
from tests.rig.ports import free_port
from tests.rig.redis import RedisServer
from tests.rig.redis_ha import (
    D,
    Deployment,
    RedisClusterRig,
    SentinelRig,
    missing_programs,
    running,
)


def full_id(start: str = "") -> str:
    """A 64-hex-digit container ID beginning with `start`."""
    return (start + uuid.uuid4().hex + uuid.uuid4().hex)[:64]


def _running(
    start: Callable[[pathlib.Path], D], tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[D]:
    if missing := missing_programs():
        pytest.skip(f"{', '.join(missing)} not installed")
    with running(start, tmp_path_factory.mktemp(name)) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def storage_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from _running(RedisServer.start, tmp_path_factory, "redis")


@pytest.fixture(scope="session")
def storage_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterRig]:
    yield from _running(RedisClusterRig.start, tmp_path_factory, "redis-cluster")


@pytest.fixture(scope="session")
def storage_redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRig]:
    yield from _running(SentinelRig.start, tmp_path_factory, "redis-sentinel")


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_storage(
    storage_redis_server: RedisServer, key_prefix: str
) -> AsyncIterator[RedisStorage]:
    store = RedisStorage(storage_redis_server.url, key_prefix)
    try:
        yield store
    finally:
        await store.close()


_DEPLOYMENTS = {
    "redis": "storage_redis_server",
    "redis-cluster": "storage_redis_cluster",
    "redis-sentinel": "storage_redis_sentinel",
}


@pytest.fixture(params=["memory", *_DEPLOYMENTS])
def storage_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    deployment: Deployment = request.getfixturevalue(_DEPLOYMENTS[request.param])
    return deployment.url


@pytest.fixture
async def storage(storage_url: str, key_prefix: str) -> AsyncIterator[Storage]:
    store = open_storage(storage_url, key_prefix)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def admin(storage_redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client for looking at the server from outside the storage under test."""
    client = redis.Redis.from_url(storage_redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


# --- containers -----------------------------------------------------------------


async def test_store_and_retrieve_container(storage: Storage) -> None:
    a, b = full_id(), full_id()
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-2", "web")

    assert await storage.retrieve_container(a) == ContainerRecord(a, "node-1", "")
    assert await storage.retrieve_container(b) == ContainerRecord(b, "node-2", "web")
    assert await storage.retrieve_container(full_id()) is None


async def test_store_container_again_moves_it_and_keeps_its_name(storage: Storage) -> None:
    a = full_id()
    await storage.store_container(a, "node-1", "web")
    await storage.store_container(a, "node-2")

    assert await storage.retrieve_container(a) == ContainerRecord(a, "node-2", "web")
    assert await storage.retrieve_containers() == [ContainerRecord(a, "node-2", "web")]


async def test_remove_container(storage: Storage) -> None:
    a, b = full_id(), full_id()
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")

    await storage.remove_container(a)
    await storage.remove_container(full_id())  # unknown: no error

    assert await storage.retrieve_container(a) is None
    assert await storage.retrieve_container(b) == ContainerRecord(b, "node-1")


async def test_retrieve_containers(storage: Storage) -> None:
    assert await storage.retrieve_containers() == []
    ids = [full_id() for _ in range(5)]
    for i, container_id in enumerate(ids):
        await storage.store_container(container_id, f"node-{i % 2}", f"c{i}")
    await storage.remove_container(ids[0])

    assert sorted(await storage.retrieve_containers(), key=lambda r: r.id) == sorted(
        (ContainerRecord(cid, f"node-{i % 2}", f"c{i}") for i, cid in enumerate(ids) if i),
        key=lambda r: r.id,
    )


# --- ID prefixes ----------------------------------------------------------------


async def test_unique_one_char_prefix_resolves(storage: Storage) -> None:
    a, b = full_id("a"), full_id("b")
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")

    assert await storage.resolve_container_prefix("a") == a
    assert await storage.resolve_container_prefix("b") == b


async def test_ambiguous_prefix_raises(storage: Storage) -> None:
    a, b = full_id("abc1"), full_id("abc2")
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")
    await storage.store_container(full_id("abd"), "node-1")

    with pytest.raises(AmbiguousPrefix) as raised:
        await storage.resolve_container_prefix("abc")
    assert raised.value.prefix == "abc"
    with pytest.raises(AmbiguousPrefix):
        await storage.resolve_container_prefix("ab")
    assert await storage.resolve_container_prefix("abc1") == a
    assert await storage.resolve_container_prefix("abc2") == b


async def test_neighbours_in_sort_order_do_not_match(storage: Storage) -> None:
    a, b = full_id("abc"), full_id("abd")
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")

    assert await storage.resolve_container_prefix("abc") == a
    assert await storage.resolve_container_prefix("abd") == b
    assert await storage.resolve_container_prefix("abb") is None
    assert await storage.resolve_container_prefix("abe") is None


async def test_unknown_prefix_is_none(storage: Storage) -> None:
    assert await storage.resolve_container_prefix("abc") is None
    await storage.store_container(full_id("abc"), "node-1")
    assert await storage.resolve_container_prefix("f") is None
    assert await storage.resolve_container_prefix("my-container") is None


async def test_exact_full_id_resolves(storage: Storage) -> None:
    a, b = full_id("ab"), full_id("ab")
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")

    assert await storage.resolve_container_prefix(a) == a
    assert await storage.resolve_container_prefix(b) == b


async def test_removed_ids_do_not_resolve(storage: Storage) -> None:
    a, b = full_id("ab"), full_id("ab")
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")

    await storage.remove_container(a)
    assert await storage.resolve_container_prefix("ab") == b
    await storage.remove_container(b)
    assert await storage.resolve_container_prefix("ab") is None
    assert await storage.resolve_container_prefix(b) is None


# --- names ----------------------------------------------------------------------


async def test_reserve_name(storage: Storage) -> None:
    assert await storage.retrieve_name("web") is None
    assert await storage.reserve_name("web", "pending:1") is None
    assert await storage.retrieve_name("web") == "pending:1"
    assert await storage.reserve_name("web", "pending:2") == "pending:1"
    assert await storage.retrieve_name("web") == "pending:1"
    # Claiming what one already holds is not a clash.
    assert await storage.reserve_name("web", "pending:1") is None


async def test_assign_name_from_pending_token(storage: Storage) -> None:
    a = full_id()
    assert await storage.reserve_name("web", "pending:1") is None
    await storage.store_container(a, "node-1")

    assert await storage.assign_name("web", a, "pending:1") is True
    assert await storage.retrieve_name("web") == a
    assert await storage.retrieve_container(a) == ContainerRecord(a, "node-1", "web")


async def test_assign_name_fails_when_owner_changed(storage: Storage) -> None:
    a = full_id()
    await storage.store_container(a, "node-1")
    assert await storage.reserve_name("web", "pending:1") is None
    await storage.release_name("web", "pending:1")
    assert await storage.reserve_name("web", "pending:2") is None

    assert await storage.assign_name("web", a, "pending:1") is False
    assert await storage.retrieve_name("web") == "pending:2"
    assert await storage.retrieve_container(a) == ContainerRecord(a, "node-1", "")

    assert await storage.assign_name("free", a, "pending:1") is False
    assert await storage.retrieve_name("free") is None


async def test_release_name_only_by_owner(storage: Storage) -> None:
    assert await storage.reserve_name("web", "pending:1") is None

    await storage.release_name("web", "pending:2")
    assert await storage.retrieve_name("web") == "pending:1"
    await storage.release_name("web", "pending:1")
    assert await storage.retrieve_name("web") is None
    await storage.release_name("web", "pending:1")  # already free: no error
    assert await storage.reserve_name("web", "pending:2") is None


async def test_rename(storage: Storage) -> None:
    a = full_id()
    await storage.store_container(a, "node-1")
    assert await storage.reserve_name("old", a) is None
    assert await storage.assign_name("old", a, a) is True

    assert await storage.reserve_name("new", "pending:1") is None
    assert await storage.assign_name("new", a, "pending:1") is True
    await storage.release_name("old", a)

    assert await storage.retrieve_name("old") is None
    assert await storage.retrieve_name("new") == a
    assert await storage.retrieve_container(a) == ContainerRecord(a, "node-1", "new")


async def test_name_freed_when_container_removed(storage: Storage) -> None:
    a = full_id()
    await storage.store_container(a, "node-1")
    assert await storage.reserve_name("web", "pending:1") is None
    assert await storage.assign_name("web", a, "pending:1") is True

    await storage.remove_container(a)
    assert await storage.retrieve_name("web") is None
    assert await storage.reserve_name("web", "pending:2") is None


async def test_name_kept_when_re_reserved_by_someone_else(storage: Storage) -> None:
    a, b = full_id(), full_id()
    await storage.store_container(a, "node-1")
    assert await storage.reserve_name("web", a) is None
    assert await storage.assign_name("web", a, a) is True
    await storage.release_name("web", a)
    assert await storage.reserve_name("web", "pending:2") is None
    await storage.store_container(b, "node-1", "db")
    assert await storage.reserve_name("db", "pending:3") is None

    await storage.remove_container(a)
    # b's record says "db" but the index gave "db" to someone else meanwhile.
    await storage.remove_container(b)
    assert await storage.retrieve_name("web") == "pending:2"
    assert await storage.retrieve_name("db") == "pending:3"


async def test_concurrent_reserve_has_one_winner(storage: Storage) -> None:
    owners = [f"pending:{i}" for i in range(50)]
    results = await asyncio.gather(*(storage.reserve_name("web", o) for o in owners))

    winners = [o for o, r in zip(owners, results, strict=True) if r is None]
    assert len(winners) == 1
    assert await storage.retrieve_name("web") == winners[0]
    assert all(r == winners[0] for r in results if r is not None)


async def test_concurrent_reserve_from_two_clients_has_one_winner(
    storage_redis_server: RedisServer, key_prefix: str
) -> None:
    first = RedisStorage(storage_redis_server.url, key_prefix)
    second = RedisStorage(storage_redis_server.url, key_prefix)
    try:
        owners = [f"pending:{i}" for i in range(50)]
        results = await asyncio.gather(
            *((first if i % 2 else second).reserve_name("web", o) for i, o in enumerate(owners))
        )
        winners = [o for o, r in zip(owners, results, strict=True) if r is None]
        assert len(winners) == 1
        assert await first.retrieve_name("web") == winners[0]
        assert await second.retrieve_name("web") == winners[0]
        assert all(r == winners[0] for r in results if r is not None)
    finally:
        await first.close()
        await second.close()


# --- execs ----------------------------------------------------------------------


async def test_store_and_retrieve_exec(storage: Storage) -> None:
    a = full_id()
    await storage.store_container(a, "node-1")
    await storage.store_exec("exec-1", a)

    assert await storage.retrieve_exec("exec-1") == a
    assert await storage.retrieve_exec("exec-2") is None
    await storage.remove_exec("exec-1")
    await storage.remove_exec("exec-1")  # already gone: no error
    assert await storage.retrieve_exec("exec-1") is None


async def test_execs_removed_with_their_container(storage: Storage) -> None:
    a, b = full_id(), full_id()
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")
    await storage.store_exec("exec-a1", a)
    await storage.store_exec("exec-a2", a)
    await storage.store_exec("exec-b", b)

    await storage.remove_container(a)
    assert await storage.retrieve_exec("exec-a1") is None
    assert await storage.retrieve_exec("exec-a2") is None
    assert await storage.retrieve_exec("exec-b") == b


async def test_exec_moved_to_another_container_survives_the_first(storage: Storage) -> None:
    a, b = full_id(), full_id()
    await storage.store_container(a, "node-1")
    await storage.store_container(b, "node-1")
    await storage.store_exec("exec-1", a)
    await storage.store_exec("exec-1", b)

    await storage.remove_container(a)
    assert await storage.retrieve_exec("exec-1") == b


# --- images ---------------------------------------------------------------------


async def test_store_image(storage: Storage) -> None:
    assert await storage.retrieve_image("busybox") is None
    await storage.store_image("busybox", "sha256:1", "node-1")
    await storage.store_image("busybox", "sha256:2", "node-2")

    image = await storage.retrieve_image("busybox")
    assert image is not None
    assert image.repository == "busybox"
    assert image.nodes == {"node-1", "node-2"}
    assert (image.last_node, image.last_id, image.last_digest) == ("node-2", "sha256:2", "")
    assert image.history == [
        ImageHistory("node-1", "sha256:1"),
        ImageHistory("node-2", "sha256:2"),
    ]


async def test_image_history_is_bounded(storage: Storage) -> None:
    # The bound is the limit plus one pair per holding node (three here).
    for i in range(IMAGE_HISTORY_LIMIT + 5):
        await storage.store_image("busybox", f"sha256:{i}", f"node-{i % 3}")

    image = await storage.retrieve_image("busybox")
    assert image is not None
    assert len(image.history) == IMAGE_HISTORY_LIMIT + 3
    assert image.history[0] == ImageHistory("node-2", "sha256:2")
    last = IMAGE_HISTORY_LIMIT + 4
    assert image.history[-1] == ImageHistory(f"node-{last % 3}", f"sha256:{last}")
    assert image.nodes == {"node-0", "node-1", "node-2"}


async def test_image_history_keeps_every_holders_pair(storage: Storage) -> None:
    # One image pulled on many more nodes than the limit: each holder's pair stays, so
    # every one of them is known to hold the newest image under the name.
    holders = IMAGE_HISTORY_LIMIT * 3
    for i in range(holders):
        await storage.store_image("busybox", "sha256:same", f"node-{i}")

    image = await storage.retrieve_image("busybox")
    assert image is not None
    assert {entry.node for entry in image.history} == {f"node-{i}" for i in range(holders)}


async def test_repeated_image_pair_is_not_duplicated(storage: Storage) -> None:
    await storage.store_image("busybox", "sha256:1", "node-1")
    await storage.store_image("busybox", "sha256:2", "node-2")
    await storage.store_image("busybox", "sha256:1", "node-1")

    image = await storage.retrieve_image("busybox")
    assert image is not None
    assert image.history == [
        ImageHistory("node-2", "sha256:2"),
        ImageHistory("node-1", "sha256:1"),
    ]
    assert (image.last_node, image.last_id) == ("node-1", "sha256:1")


async def test_remove_image(storage: Storage) -> None:
    await storage.store_image("busybox", "sha256:1", "node-1")
    await storage.store_image("busybox", "sha256:1", "node-2")
    await storage.store_image("busybox", "sha256:2", "node-2")

    await storage.remove_image("busybox", "sha256:2", "node-2")
    image = await storage.retrieve_image("busybox")
    assert image is not None
    assert image.nodes == {"node-1"}
    assert image.history == [
        ImageHistory("node-1", "sha256:1"),
        ImageHistory("node-2", "sha256:1"),
    ]
    # The last node no longer holds it: the newest entry from a node that does takes over.
    assert (image.last_node, image.last_id) == ("node-1", "sha256:1")

    await storage.remove_image("busybox", "sha256:1", "node-1")
    assert await storage.retrieve_image("busybox") is None
    assert await storage.retrieve_images() == []
    await storage.remove_image("busybox", "sha256:1", "node-1")  # unknown: no error


async def test_image_digest(storage: Storage) -> None:
    await storage.store_image("busybox", "sha256:1", "node-1")
    await storage.set_image_digest("busybox", "sha256:d1")

    image = await storage.retrieve_image("busybox")
    assert image is not None
    assert image.last_digest == "sha256:d1"

    # A digest alone does not make an image record.
    await storage.set_image_digest("alpine", "sha256:d2")
    assert await storage.retrieve_image("alpine") is None


async def test_retrieve_images(storage: Storage) -> None:
    await storage.store_image("busybox", "sha256:1", "node-1")
    await storage.store_image("alpine", "sha256:2", "node-2")
    await storage.store_image("registry:5000/team/app", "sha256:3", "node-1")

    images = {i.repository: i for i in await storage.retrieve_images()}
    assert set(images) == {"busybox", "alpine", "registry:5000/team/app"}
    assert images["alpine"].nodes == {"node-2"}
    assert images["registry:5000/team/app"].last_id == "sha256:3"


async def test_retrieved_image_is_a_copy(storage: Storage) -> None:
    await storage.store_image("busybox", "sha256:1", "node-1")
    image = await storage.retrieve_image("busybox")
    assert image is not None
    image.nodes.add("node-9")
    image.history.clear()

    again = await storage.retrieve_image("busybox")
    assert again is not None
    assert again.nodes == {"node-1"}
    assert again.history == [ImageHistory("node-1", "sha256:1")]


# --- nodes ----------------------------------------------------------------------


def node_record(address: str, **metadata: str) -> NodeRecord:
    return NodeRecord(address=address, name=address.split("//")[-1], metadata=metadata)


async def test_store_and_retrieve_node(storage: Storage) -> None:
    node = NodeRecord(
        address="http://127.0.0.1:2375",
        name="node-1",
        metadata={"pool": "a", "zone": "z1"},
        creation_status="creating",
        healing=HealingData(locked_until=12.5, is_failure=True),
        failures=3,
        last_error="connection refused: it's down",
        last_error_at=1700000000.25,
        last_success_at=1699999990.5,
        disabled_until=1700000020.125,
        tls={"ca": "-----BEGIN CERTIFICATE-----\nMII…\n", "key": "PEM"},
    )
    await storage.store_node(node)

    assert await storage.retrieve_node(node.address) == node
    assert await storage.retrieve_node("http://127.0.0.1:9") is None
    with pytest.raises(ValueError):
        await storage.store_node(node_record(node.address))
    assert await storage.retrieve_node(node.address) == node


async def test_retrieve_nodes(storage: Storage) -> None:
    assert await storage.retrieve_nodes() == []
    nodes = [node_record(f"http://127.0.0.1:{2375 + i}") for i in range(3)]
    for node in nodes:
        await storage.store_node(node)

    retrieved = sorted(await storage.retrieve_nodes(), key=lambda n: n.address)
    assert retrieved == sorted(nodes, key=lambda n: n.address)


async def test_retrieve_nodes_by_metadata(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1", pool="a", zone="z1"))
    await storage.store_node(node_record("http://n2", pool="a", zone="z2"))
    await storage.store_node(node_record("http://n3", pool="b", zone="z1"))

    async def addresses(metadata: dict[str, str]) -> set[str]:
        return {n.address for n in await storage.retrieve_nodes_by_metadata(metadata)}

    assert await addresses({"pool": "a"}) == {"http://n1", "http://n2"}
    assert await addresses({"pool": "a", "zone": "z1"}) == {"http://n1"}
    assert await addresses({"zone": "z1"}) == {"http://n1", "http://n3"}
    assert await addresses({"pool": "c"}) == set()
    assert await addresses({"rack": "r1"}) == set()
    assert await addresses({}) == {"http://n1", "http://n2", "http://n3"}


async def test_update_node(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1", pool="a", zone="z1"))
    updated = NodeRecord("http://n1", "renamed", {"pool": "b"}, "created", HealingData(3.0))
    updated.failures, updated.disabled_until = 2, 1700000000.5
    await storage.update_node(updated)

    assert await storage.retrieve_node("http://n1") == updated
    assert [n.address for n in await storage.retrieve_nodes_by_metadata({"pool": "a"})] == []
    with pytest.raises(KeyError):
        await storage.update_node(node_record("http://missing"))
    assert await storage.retrieve_node("http://missing") is None


async def test_remove_node(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    await storage.store_node(node_record("http://n2"))

    await storage.remove_node("http://n1")
    assert await storage.retrieve_node("http://n1") is None
    assert [n.address for n in await storage.retrieve_nodes()] == ["http://n2"]
    with pytest.raises(KeyError):
        await storage.remove_node("http://n1")
    # Gone means gone: the address can be registered afresh.
    await storage.store_node(node_record("http://n1"))


async def test_remove_nodes(storage: Storage) -> None:
    for i in range(4):
        await storage.store_node(node_record(f"http://n{i}"))

    await storage.remove_nodes(["http://n0", "http://n2", "http://unknown"])
    await storage.remove_nodes([])
    assert sorted(n.address for n in await storage.retrieve_nodes()) == ["http://n1", "http://n3"]


async def test_retrieved_node_is_a_copy(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1", pool="a"))
    node = await storage.retrieve_node("http://n1")
    assert node is not None
    node.metadata["pool"] = "b"
    node.healing.is_failure = True

    assert await storage.retrieve_node("http://n1") == node_record("http://n1", pool="a")


# --- healing lock ---------------------------------------------------------------


async def test_healing_lock(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    before = time.time()

    assert await storage.lock_node_for_healing("http://n1", True, 30.0) is True
    node = await storage.retrieve_node("http://n1")
    assert node is not None
    assert node.healing.is_failure is True
    assert before + 29 < node.healing.locked_until < time.time() + 31

    assert await storage.lock_node_for_healing("http://n1", False, 30.0) is False
    node = await storage.retrieve_node("http://n1")
    assert node is not None
    assert node.healing.is_failure is True


async def test_healing_lock_is_per_node(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    await storage.store_node(node_record("http://n2"))

    assert await storage.lock_node_for_healing("http://n1", False, 30.0) is True
    assert await storage.lock_node_for_healing("http://n2", False, 30.0) is True


async def test_healing_lock_on_unknown_node(storage: Storage) -> None:
    with pytest.raises(KeyError):
        await storage.lock_node_for_healing("http://missing", False, 30.0)


async def test_unlock_then_relock(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    assert await storage.lock_node_for_healing("http://n1", True, 30.0) is True

    await storage.unlock_node("http://n1")
    node = await storage.retrieve_node("http://n1")
    assert node is not None
    assert node.healing == HealingData()
    assert await storage.lock_node_for_healing("http://n1", False, 30.0) is True
    await storage.unlock_node("http://missing")  # unknown: no error


async def test_healing_lock_expires(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    assert await storage.lock_node_for_healing("http://n1", False, 0.2) is True
    assert await storage.lock_node_for_healing("http://n1", False, 0.2) is False

    await asyncio.sleep(0.35)
    assert await storage.lock_node_for_healing("http://n1", True, 0.2) is True


async def test_extend_healing_lock(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    assert await storage.lock_node_for_healing("http://n1", False, 0.3) is True

    await storage.extend_node_lock("http://n1", 30.0)
    node = await storage.retrieve_node("http://n1")
    assert node is not None
    assert node.healing.locked_until > time.time() + 29
    await asyncio.sleep(0.45)
    assert await storage.lock_node_for_healing("http://n1", False, 0.3) is False


async def test_extend_does_not_revive_an_expired_lock(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    assert await storage.lock_node_for_healing("http://n1", False, 0.1) is True
    await asyncio.sleep(0.25)

    await storage.extend_node_lock("http://n1", 30.0)
    assert await storage.lock_node_for_healing("http://n1", False, 30.0) is True


async def test_removed_node_drops_its_lock(storage: Storage) -> None:
    await storage.store_node(node_record("http://n1"))
    assert await storage.lock_node_for_healing("http://n1", False, 30.0) is True

    await storage.remove_node("http://n1")
    await storage.store_node(node_record("http://n1"))
    assert await storage.lock_node_for_healing("http://n1", False, 30.0) is True


async def test_ping(storage: Storage) -> None:
    await storage.ping()


# --- Redis only -----------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_unreachable_redis_raises_storage_error() -> None:
    port = free_port()
    store = RedisStorage(f"redis://127.0.0.1:{port}/0", "test:")
    try:
        with pytest.raises(StorageError, match=f"127.0.0.1:{port}"):
            await store.ping()
        with pytest.raises(StorageError, match=f"127.0.0.1:{port}") as raised:
            await store.reserve_name("web", "pending:1")
        assert isinstance(raised.value.__cause__, redis.RedisError)
        with pytest.raises(StorageError):
            await store.store_container(full_id(), "node-1")
        with pytest.raises(StorageError):
            await store.retrieve_containers()
    finally:
        await store.close()


async def test_prefix_resolution_uses_zrangebylex_not_scan(
    redis_storage: RedisStorage, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [full_id() for _ in range(200)]
    for container_id in ids:
        await redis_storage.store_container(container_id, "node-1")

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("prefix resolution scanned the keyspace")

    for method in ("scan", "scan_iter", "keys", "zscan", "zscan_iter"):
        monkeypatch.setattr(redis_storage.client, method, forbidden)

    def calls(command: str) -> int:
        stats: dict[str, Any] = admin.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    before = {c: calls(c) for c in ("zrangebylex", "scan", "keys", "zscan", "zrange")}
    assert await redis_storage.resolve_container_prefix(ids[0][:12]) == ids[0]
    assert await redis_storage.resolve_container_prefix("g") is None
    after = {c: calls(c) for c in before}

    assert after["zrangebylex"] == before["zrangebylex"] + 2
    assert after["scan"] == before["scan"]
    assert after["keys"] == before["keys"]
    assert after["zscan"] == before["zscan"]
    assert after["zrange"] == before["zrange"]


async def write_every_kind_of_key(store: RedisStorage, a: str) -> None:
    """Store one of everything that has keys of its own, around the container `a`."""
    await store.store_container(a, "node-1", "web")
    assert await store.reserve_name("web", a) is None
    assert await store.assign_name("web", a, a)
    await store.store_exec("exec-1", a)
    await store.store_image("busybox", "sha256:1", "node-1")
    await store.set_image_digest("busybox", "sha256:d")
    await store.store_node(node_record("http://n1", pool="a"))
    assert await store.lock_node_for_healing("http://n1", False, 30.0)


async def test_every_key_is_under_the_prefix(
    redis_storage: RedisStorage, admin: redis.Redis, key_prefix: str
) -> None:
    before = set(admin.scan_iter())
    a = full_id()
    await write_every_kind_of_key(redis_storage, a)

    new = set(admin.scan_iter()) - before
    assert len(new) >= 10
    assert all(key.startswith(key_prefix) for key in new), sorted(new)

    await redis_storage.remove_container(a)
    await redis_storage.remove_image("busybox", "sha256:1", "node-1")
    await redis_storage.remove_node("http://n1")
    assert set(admin.scan_iter(match=f"{key_prefix}*")) == set()


async def test_on_a_cluster_every_key_shares_one_slot_under_a_hash_tag(
    storage_redis_cluster: RedisClusterRig,
    redis_storage: RedisStorage,
    admin: redis.Redis,
    key_prefix: str,
) -> None:
    tagged = "{" + key_prefix.removesuffix(":") + "}:"
    on_cluster = RedisStorage(storage_redis_cluster.url, key_prefix)
    try:
        assert on_cluster.prefix == tagged
        container_id = full_id()
        for store in (on_cluster, redis_storage):
            await write_every_kind_of_key(store, container_id)
            await store.store_volume("data", "node-1")
            await store.increment("rr")
            assert await store.resolve_container_prefix(container_id[:12]) == container_id
    finally:
        await on_cluster.close()

    by_node: dict[int, set[str]] = {}
    for node in storage_redis_cluster.nodes:
        with redis.Redis(port=node.port, decode_responses=True) as client:
            by_node[node.port] = set(client.scan_iter(match=f"{tagged}*"))
            slots = {client.cluster("KEYSLOT", key) for key in by_node[node.port]}
        assert len(slots) <= 1
    assert [len(keys) > 0 for keys in by_node.values()].count(True) == 1
    on_cluster_keys = set().union(*by_node.values())
    # The layout of one server, where the prefix is used unchanged, with the tag in front.
    single_keys = set(admin.scan_iter(match=f"{key_prefix}*"))
    assert len(single_keys) >= 12
    assert {k.removeprefix(tagged) for k in on_cluster_keys} == {
        k.removeprefix(key_prefix) for k in single_keys
    }


async def test_two_prefixes_do_not_see_each_other(storage_redis_server: RedisServer) -> None:
    first = RedisStorage(storage_redis_server.url, f"test-{uuid.uuid4().hex}:")
    second = RedisStorage(storage_redis_server.url, f"test-{uuid.uuid4().hex}:")
    try:
        a = full_id("a")
        await first.store_container(a, "node-1")
        assert await first.reserve_name("web", a) is None

        assert await second.retrieve_container(a) is None
        assert await second.resolve_container_prefix("a") is None
        assert await second.reserve_name("web", "pending:1") is None
    finally:
        await first.close()
        await second.close()


# --- open_storage ---------------------------------------------------------------


async def test_open_storage() -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)
    for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/1", "unix:///tmp/r.sock"):
        store = open_storage(url, "p:")
        assert isinstance(store, RedisStorage)
        await store.close()
    with pytest.raises(ValueError, match=r"etcd://x.*memory://.*redis://"):
        open_storage("etcd://x")
    with pytest.raises(ValueError, match="no-scheme"):
        open_storage("no-scheme")


# --- volumes --------------------------------------------------------------------


async def test_store_and_retrieve_volume(storage: Storage) -> None:
    assert await storage.retrieve_volume("data") == set()
    await storage.store_volume("data", "node-1")
    await storage.store_volume("data", "node-2")
    await storage.store_volume("data", "node-1")  # again: no change
    await storage.store_volume("logs", "node-2")

    assert await storage.retrieve_volume("data") == {"node-1", "node-2"}
    assert await storage.retrieve_volume("logs") == {"node-2"}
    assert await storage.retrieve_volume("other") == set()


async def test_remove_volume(storage: Storage) -> None:
    await storage.store_volume("data", "node-1")
    await storage.store_volume("data", "node-2")

    await storage.remove_volume("data", "node-1")
    await storage.remove_volume("data", "node-3")  # not a holder: no error
    await storage.remove_volume("unknown", "node-1")
    assert await storage.retrieve_volume("data") == {"node-2"}

    await storage.remove_volume("data", "node-2")
    assert await storage.retrieve_volume("data") == set()
    assert await storage.retrieve_volumes() == {}

    await storage.store_volume("data", "node-3")  # a name freed is a name like any other
    assert await storage.retrieve_volumes() == {"data": {"node-3"}}


async def test_retrieve_volumes(storage: Storage) -> None:
    assert await storage.retrieve_volumes() == {}
    for i in range(5):
        await storage.store_volume(f"v{i}", f"node-{i % 2}")
        await storage.store_volume(f"v{i}", "node-9")
    await storage.remove_volume("v0", "node-0")
    await storage.remove_volume("v0", "node-9")

    assert await storage.retrieve_volumes() == {
        f"v{i}": {f"node-{i % 2}", "node-9"} for i in range(1, 5)
    }


async def test_retrieved_volumes_are_copies(storage: Storage) -> None:
    await storage.store_volume("data", "node-1")
    (await storage.retrieve_volume("data")).add("node-2")
    (await storage.retrieve_volumes())["data"].add("node-2")

    assert await storage.retrieve_volume("data") == {"node-1"}


async def test_a_dry_mode_copy_takes_the_volumes(storage: Storage) -> None:
    await storage.store_volume("data", "node-1")
    await storage.store_volume("data", "node-2")
    copied = await MemoryStorage.copy_of(storage)
    await copied.remove_volume("data", "node-1")

    assert await copied.retrieve_volume("data") == {"node-2"}
    assert await storage.retrieve_volume("data") == {"node-1", "node-2"}


# --- counters -------------------------------------------------------------------


async def test_counter_starts_at_one_and_counts(storage: Storage) -> None:
    assert await storage.counter("rr") == 0
    assert [await storage.increment("rr") for _ in range(3)] == [1, 2, 3]
    assert await storage.counter("rr") == 3
    assert await storage.counter("rr") == 3  # reading does not change it


async def test_counters_are_independent(storage: Storage) -> None:
    await storage.increment("a")
    await storage.increment("a")
    assert await storage.increment("b") == 1
    assert (await storage.counter("a"), await storage.counter("b")) == (2, 1)
    assert await storage.counter("c") == 0


async def test_concurrent_increments_each_get_their_own_value(storage: Storage) -> None:
    values = await asyncio.gather(*(storage.increment("rr") for _ in range(50)))
    assert sorted(values) == list(range(1, 51))
    assert await storage.counter("rr") == 50


async def test_change_log_gives_what_changed_since_a_count(storage: Storage) -> None:
    assert await storage.container_changes({"n1": 0, "n2": 0}) == {
        "n1": ChangeLog(0, []),
        "n2": ChangeLog(0, []),
    }
    first, second = full_id("a"), full_id("b")
    await storage.note_container_change("n1", first)
    await storage.note_container_change("n1", second)
    await storage.note_container_change("n2", first)
    logs = await storage.container_changes({"n1": 0, "n2": 1, "n3": 0})
    assert logs == {
        "n1": ChangeLog(2, [second, first]),
        "n2": ChangeLog(1, []),
        "n3": ChangeLog(0, []),
    }
    assert (await storage.container_changes({"n1": 1}))["n1"] == ChangeLog(2, [second])


async def test_change_log_says_when_it_cannot_tell(storage: Storage) -> None:
    for _ in range(CHANGE_LOG_LIMIT + 1):
        await storage.note_container_change("n1", full_id())
    overflowed = await storage.container_changes({"n1": 0})
    assert overflowed["n1"] == ChangeLog(CHANGE_LOG_LIMIT + 1, None)
    kept = await storage.container_changes({"n1": 1})
    assert kept["n1"].count == CHANGE_LOG_LIMIT + 1
    assert kept["n1"].ids is not None and len(kept["n1"].ids) == CHANGE_LOG_LIMIT
    # A count seen that is ahead of storage's: storage was wiped since.
    assert (await storage.container_changes({"n1": 500}))["n1"].ids is None


async def test_replicas_share_one_change_log(
    storage_redis_server: RedisServer, key_prefix: str
) -> None:
    replicas = [RedisStorage(storage_redis_server.url, key_prefix) for _ in range(3)]
    try:
        noted = [full_id() for _ in range(9)]
        await asyncio.gather(
            *(replicas[i % 3].note_container_change("n", c) for i, c in enumerate(noted))
        )
        log = (await replicas[0].container_changes({"n": 0}))["n"]
        assert log.count == 9 and log.ids is not None and sorted(log.ids) == sorted(noted)
    finally:
        for replica in replicas:
            await replica.close()


async def test_replicas_share_one_counter(
    storage_redis_server: RedisServer, key_prefix: str
) -> None:
    replicas = [RedisStorage(storage_redis_server.url, key_prefix) for _ in range(3)]
    try:
        values = await asyncio.gather(
            *(replica.increment("rr") for replica in replicas for _ in range(20))
        )
        assert sorted(values) == list(range(1, 61))
        assert [await replica.counter("rr") for replica in replicas] == [60, 60, 60]
    finally:
        for replica in replicas:
            await replica.close()


async def test_volume_and_counter_keys_are_under_the_prefix(
    redis_storage: RedisStorage, admin: redis.Redis, key_prefix: str
) -> None:
    assert await redis_storage.counter("rr") == 0
    assert set(admin.scan_iter(match=f"{key_prefix}*")) == set()  # a read writes nothing

    await redis_storage.store_volume("data", "node-1")
    await redis_storage.increment("rr")
    assert set(admin.scan_iter(match=f"{key_prefix}*")) == {
        f"{key_prefix}volumes",
        f"{key_prefix}volume-nodes:data",
        f"{key_prefix}counter:rr",
    }
    assert admin.get(f"{key_prefix}counter:rr") == "1"

    await redis_storage.remove_volume("data", "node-1")
    assert set(admin.scan_iter(match=f"{key_prefix}*")) == {f"{key_prefix}counter:rr"}


async def test_reschedulables_are_stored_listed_and_removed(storage: Storage) -> None:
    assert await storage.retrieve_reschedulables() == {}
    await storage.store_reschedulable("a" * 64, '{"node": "tcp://n1"}')
    await storage.store_reschedulable("b" * 64, '{"node": "tcp://n2"}')
    await storage.store_reschedulable("a" * 64, '{"node": "tcp://n3"}')
    assert await storage.retrieve_reschedulables() == {
        "a" * 64: '{"node": "tcp://n3"}',
        "b" * 64: '{"node": "tcp://n2"}',
    }
    await storage.remove_reschedulable("a" * 64)
    await storage.remove_reschedulable("c" * 64)
    assert list(await storage.retrieve_reschedulables()) == ["b" * 64]
