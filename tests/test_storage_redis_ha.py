"""Redis beyond one server: the URL forms, the cluster's hash tag, and Sentinel failovers.

The storage contract itself runs on a cluster and behind a sentinel in
tests/test_storage_contract.py; here are what those deployments add: how their URLs are
read, and that writes carry on through a master's switch.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from swarmproxy.storage import StorageError, open_storage
from swarmproxy.storage.redis import RedisStorage
from tests.rig.ports import free_port
from tests.rig.redis_ha import SentinelRig, missing_programs, role, running

# --- URL forms ------------------------------------------------------------------


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[str, str], RedisStorage]]:
    """Opens storages without reaching any server (clients connect on first use)."""
    stores: list[RedisStorage] = []

    def open_one(url: str, prefix: str) -> RedisStorage:
        store = open_storage(url, prefix)
        assert isinstance(store, RedisStorage)
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


def test_sentinel_url(opened: Callable[[str, str], RedisStorage]) -> None:
    store = opened("redis+sentinel://:s3cret@h1:26380,[::1],h3/mymaster/2?socket_timeout=7", "p:")

    pool = store.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["socket_timeout"] == 7.0
    sentinels = pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in sentinels
    ] == [("h1", 26380), ("::1", 26379), ("h3", 26379)]
    # The password is the master's: sentinels without one of their own get none.
    assert all(s.connection_pool.connection_kwargs["password"] is None for s in sentinels)
    assert store.address == "sentinel h1:26380,[::1]:26379,h3:26379, master mymaster (db 2)"
    assert "s3cret" not in store.address
    # Single server and Sentinel keep the prefix as it is.
    assert store.prefix == "p:"


def test_sentinel_url_with_the_sentinels_own_password_and_tls(
    opened: Callable[[str, str], RedisStorage],
) -> None:
    store = opened(
        "rediss+sentinel://app:pw@h1/mymaster?sentinel_password=spw&ssl_cert_reqs=none", "p:"
    )

    pool = store.client.connection_pool
    assert issubclass(pool.connection_class, SentinelManagedSSLConnection)
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("app", "pw")
    assert pool.connection_kwargs["db"] == 0
    (sentinel,) = pool.sentinel_manager.sentinels
    assert sentinel.connection_pool.connection_kwargs["password"] == "spw"
    assert sentinel.connection_pool.connection_class is SSLConnection
    assert sentinel.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"


def test_cluster_url(opened: Callable[[str, str], RedisStorage]) -> None:
    plain = opened("redis+cluster://:pw@n1:7000,n2:7001/", "swarmproxy:")
    assert isinstance(plain.client, RedisCluster)
    assert [(n.host, n.port) for n in plain.client.startup_nodes] == [("n1", 7000), ("n2", 7001)]
    assert plain.client.connection_kwargs["password"] == "pw"
    assert plain.address == "cluster n1:7000,n2:7001"
    assert plain.prefix == "{swarmproxy}:"

    tls = opened("rediss+cluster://n1", "swarmproxy:")
    assert isinstance(tls.client, RedisCluster)
    assert [(n.host, n.port) for n in tls.client.startup_nodes] == [("n1", 6379)]
    assert tls.client.connection_kwargs["connection_class"] is SSLConnection


@pytest.mark.parametrize(
    ("prefix", "on_a_cluster"),
    [
        ("swarmproxy:", "{swarmproxy}:"),
        ("sp", "{sp}"),
        # A tag already there is kept, so the names can be the same everywhere.
        ("{swarmproxy}:", "{swarmproxy}:"),
        ("app:{sp}:", "app:{sp}:"),
        ("a{}b:", "{a{}b}:"),
    ],
)
def test_cluster_prefix_is_a_hash_tag(
    opened: Callable[[str, str], RedisStorage], prefix: str, on_a_cluster: str
) -> None:
    assert opened("redis+cluster://n1:7000", prefix).prefix == on_a_cluster
    assert opened("redis://n1:6379/0", prefix).prefix == prefix


@pytest.mark.parametrize(
    ("url", "prefix", "message"),
    [
        ("redis+sentinel://:pw@h1:26379/", "p:", "MASTERNAME"),
        ("redis+sentinel://:pw@h1:26379/m/0/x", "p:", "MASTERNAME"),
        ("redis+sentinel://:pw@h1:26379/m/x", "p:", "bad db 'x'"),
        ("redis+sentinel://:pw@h1:port/m", "p:", "'h1:port' is not HOST"),
        ("redis+cluster://:pw@h1:7000,/", "p:", "'' is not HOST"),
        ("redis+cluster://:pw@h1:7000/1", "p:", "only db 0"),
        ("redis+cluster://:pw@h1:7000/?db=2", "p:", "only db 0"),
        ("redis+cluster://:pw@h1:7000/", "", "prefix '' cannot be a hash tag"),
        ("redis+cluster://:pw@h1:7000/", "}x:", "cannot be a hash tag"),
    ],
)
def test_bad_urls_are_refused_without_their_password(url: str, prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        open_storage(url, prefix)
    assert "pw" not in str(refused.value)


def test_unsupported_url_names_every_form() -> None:
    with pytest.raises(ValueError) as refused:
        open_storage("redis+raft://h1/")
    for scheme in ("memory", "redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
        assert f" {scheme}://" in str(refused.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "form", ["redis+cluster://127.0.0.1:{port}/", "redis+sentinel://127.0.0.1:{port}/mymaster"]
)
async def test_unreachable_deployment_raises_storage_error_in_bounded_time(form: str) -> None:
    port = free_port()
    store = open_storage(form.format(port=port), "p:")
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=rf"127\.0\.0\.1:{port}\b.* is unreachable"):
            await store.store_container(uuid.uuid4().hex * 2, "node-1")
        assert time.monotonic() - started < 5
    finally:
        await store.close()


# --- failover -------------------------------------------------------------------


@pytest.fixture
def sentinel_setup(tmp_path: pathlib.Path) -> Iterator[SentinelRig]:
    """A setup of the test's own: a failover changes it for good."""
    if missing := missing_programs():
        pytest.skip(f"{', '.join(missing)} not installed")
    with running(SentinelRig.start, tmp_path) as rig:
        yield rig


@dataclass
class Write:
    container_id: str
    started: float
    ended: float = 0.0
    error: str = ""


class Writer:
    """Stores containers one after another through a storage, noting how each write went."""

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        self.writes: list[Write] = []
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        while not self._stopped.is_set():
            write = Write(uuid.uuid4().hex * 2, time.monotonic())
            try:
                await self.storage.store_container(write.container_id, "node-1")
            except StorageError as e:
                write.error = str(e)
            write.ended = time.monotonic()
            self.writes.append(write)
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._stopped.set()

    def started_after(self, moment: float) -> list[Write]:
        return [w for w in self.writes if w.started > moment]

    def errors(self) -> list[Write]:
        return [w for w in self.writes if w.error]


async def until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Waits for `check` (run off the event loop: it may block) to hold; when it did."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        await asyncio.sleep(0.05)
    return time.monotonic()


async def write_through(
    rig: SentinelRig, switch: Callable[[int], None], switched: Callable[[int], bool]
) -> tuple[Writer, float, float]:
    """Writes go on while `switch` (given the master's port) makes the sentinel pick another
    master; once `switched` (given the old port) holds, 20 more writes. The writer, and when
    the switch began and ended."""
    storage = open_storage(rig.url, "failover:")
    assert isinstance(storage, RedisStorage)
    writer = Writer(storage)
    task = asyncio.create_task(writer.run())
    try:
        await until("first writes", lambda: len(writer.writes) >= 5, timeout=10)
        old = rig.master_port()
        began = time.monotonic()
        await asyncio.to_thread(switch, old)
        ended = await until("the switch", lambda: switched(old), timeout=30)
        await until(
            "writes after the switch", lambda: len(writer.started_after(ended)) >= 20, timeout=15
        )
        writer.stop()
        await task
        after = writer.started_after(ended)
        assert [w.error for w in after] == [""] * len(after)
        # The new master holds them: read back through the storage, and seen there directly.
        for write in after:
            assert await storage.retrieve_container(write.container_id) is not None
        new = rig.master_port()
        assert new != old
        assert role(new) == "master"
        return writer, began, ended
    finally:
        writer.stop()
        await task
        await storage.close()


@pytest.mark.timeout(90)
async def test_writes_follow_a_sentinel_failover(sentinel_setup: SentinelRig) -> None:
    def demoted(old: int) -> bool:
        # The sentinel names the new master at once, and demotes the old one some seconds
        # later (dropping its clients): only then do the proxy's connections move.
        return sentinel_setup.master_port() != old and role(old) == "slave"

    writer, _, _ = await write_through(sentinel_setup, lambda _: sentinel_setup.failover(), demoted)

    # Every write cut off by the switch was retried on the new master.
    assert writer.errors() == []


@pytest.mark.timeout(90)
async def test_writes_resume_on_the_new_master_when_the_old_one_dies(
    sentinel_setup: SentinelRig,
) -> None:
    def kill(old: int) -> None:
        sentinel_setup.server(old).stop()

    writer, killed, switched = await write_through(
        sentinel_setup, kill, lambda old: sentinel_setup.master_port() != old
    )

    # Until the sentinel gives up on the old master (down-after-milliseconds), then picks
    # another, writes fail: each within its bounded retries, none left hanging.
    assert switched - killed < SentinelRig.down_after / 1000 + 10
    assert all(w.ended - w.started < 15 for w in writer.writes)
    assert all(killed - 5 < w.started < switched for w in writer.errors())
    resumed = min(w.ended for w in writer.started_after(killed) if not w.error)
    assert resumed - killed < SentinelRig.down_after / 1000 + 10
