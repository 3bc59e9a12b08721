"""Redis storage: one index shared by every proxy replica.

The URL names one of three kinds of deployment (see open_storage for the exact forms):

- one server, or a primary with replicas reached at the primary: ``redis://``,
  ``rediss://``, ``unix://``;
- a master watched by Redis Sentinel: ``redis+sentinel://`` (``rediss+sentinel://``). The
  sentinels name the master at each new connection, so the proxy follows a failover: a
  command cut off by the switch (its connection dropped, the old master gone or answering
  READONLY) is retried a bounded number of times on the master they name next. Writes that
  reached the old master before it was demoted are lost with it: reconciling with the nodes
  recovers them, not this module;
- a Redis Cluster: ``redis+cluster://`` (``rediss+cluster://``).

Key layout, all under the configurable prefix P:

    P containers                    zset of container IDs, all scored 0 (lexicographic order)
    P container:<id>                hash: node, name
    P container-execs:<id>          set of the container's exec IDs
    P exec:<id>                     string: container ID
    P name:<name>                   string: owner (container ID or pending token)
    P images                        set of repositories
    P image:<repo>                  hash: last_node, last_id, last_digest
    P image-nodes:<repo>            set of node addresses
    P image-history:<repo>          list of JSON [node, image ID], oldest first, capped
    P nodes                         set of node addresses
    P node:<address>                hash: name, metadata (JSON), creation_status,
                                    healing_locked_until, healing_is_failure, failures,
                                    last_error, last_error_at, last_success_at,
                                    disabled_until, tls (JSON of PEM texts)
    P node-lock:<address>           the healing lock, expiring on its own
    P volumes                       set of volume names
    P volume-nodes:<name>           set of the addresses of the nodes holding one so named
    P counter:<key>                 string: an integer, changed only by INCR
    P reschedulable                 hash: container ID -> its rescheduling plan (JSON)

Multi-key changes, and reads that must see several keys at one instant, run as Lua
scripts (one round trip, atomic), never as MULTI, which redis-py's async cluster client
supports only in recent versions and only in part. Some scripts derive keys from values
they read (a container's name, its execs), which a Redis Cluster allows only in the slot of
the keys the script declares. So on a Redis Cluster every key of one prefix shares one hash
slot: P becomes a hash tag, ``swarmproxy:`` turning into ``{swarmproxy}:``
(``{swarmproxy}:container:<id>``, ...), and a prefix that already holds a tag
(``{swarmproxy}:``, ``app:{sp}:``) is kept as it is. The whole index then lives on the
master serving that slot: the cluster brings failover and room for other data, not a
spread of this index, which stays small. On one server or behind Sentinel the prefix is
used unchanged, so an index written before keeps its key names. A prefix that holds a tag
gives the same names on all three.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import (
    AbstractBackoff,
    EqualJitterBackoff,
    ExponentialWithJitterBackoff,
    NoBackoff,
)
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarmproxy import metrics
from swarmproxy.storage.base import (
    CHANGE_LOG_LIMIT,
    IMAGE_HISTORY_LIMIT,
    AmbiguousPrefix,
    ChangeLog,
    ContainerRecord,
    HealingData,
    ImageHistory,
    ImageRecord,
    NodeRecord,
    Storage,
    StorageError,
    changes_after,
)

# A proxy request waits on storage: fail within seconds rather than hang, but retry a
# little so a pooled connection left dead by a Redis restart is replaced transparently.
_SOCKET_TIMEOUT = 5.0
_RETRIES = 2
# Behind Sentinel, retries also carry a command over the master's switch, each one asking
# the sentinels for the master anew, and are spaced wider (0.25 to 1 s) so that together
# they span the moment of a switch: a new connection is tried up to 4 times, and a command
# cut off mid-flight is retried up to 3 times, each with such a reconnection. A master that
# stays unreachable longer (the sentinels first wait out their down-after-milliseconds)
# fails the command as unreachable; the next command starts afresh.
_FAILOVER_RETRIES = 3

# KEYS: container hash, containers zset. ARGV: container ID, node, name (empty: keep it).
_STORE_CONTAINER = """
redis.call('HSET', KEYS[1], 'node', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'name', ARGV[3]) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

_RESERVE_NAME = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return false end
return redis.call('GET', KEYS[1])
"""

# A name already held by the target counts as moved: a retried call after a lost reply
# must not report failure for its own success.
_ASSIGN_NAME = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[2] and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'name', ARGV[3]) end
return 1
"""

_RELEASE_NAME = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('HGET', KEYS[2], 'name') == ARGV[2] then redis.call('HSET', KEYS[2], 'name', '') end
return 1
"""

# KEYS: container hash, containers zset, container's exec set.
# ARGV: container ID, name key prefix, exec key prefix.
_REMOVE_CONTAINER = """
local name = redis.call('HGET', KEYS[1], 'name')
if name and name ~= '' then
  local name_key = ARGV[2] .. name
  if redis.call('GET', name_key) == ARGV[1] then redis.call('DEL', name_key) end
end
for _, exec_id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local exec_key = ARGV[3] .. exec_id
  if redis.call('GET', exec_key) == ARGV[1] then redis.call('DEL', exec_key) end
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: exec key, new container's exec set. ARGV: exec ID, container ID, exec set prefix.
_STORE_EXEC = """
local old = redis.call('GET', KEYS[1])
if old and old ~= ARGV[2] then redis.call('SREM', ARGV[3] .. old, ARGV[1]) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: exec key. ARGV: exec ID, exec set prefix.
_REMOVE_EXEC = """
local container_id = redis.call('GET', KEYS[1])
if not container_id then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. container_id, ARGV[1])
return 1
"""

# KEYS: image hash, image nodes, image history, images set.
# ARGV: repository, node, image ID, history entry, history limit beyond one per holder.
# A repeated pair moves to the newest end of the history instead of crowding out others.
_STORE_IMAGE = """
redis.call('HSET', KEYS[1], 'last_node', ARGV[2], 'last_id', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('LREM', KEYS[3], 0, ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], -(tonumber(ARGV[5]) + redis.call('SCARD', KEYS[2])), -1)
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"""

# KEYS: image hash, image nodes, image history, for each image. One snapshot of them all:
# for each image, its hash (flat field/value list), its nodes and its history.
_FETCH_IMAGES = """
local records = {}
for i = 1, #KEYS, 3 do
  records[#records + 1] = {
    redis.call('HGETALL', KEYS[i]),
    redis.call('SMEMBERS', KEYS[i + 1]),
    redis.call('LRANGE', KEYS[i + 2], 0, -1),
  }
end
return records
"""

# KEYS: image hash, image nodes, image history, images set.
# ARGV: repository, node, history entry.
_REMOVE_IMAGE = """
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('SREM', KEYS[4], ARGV[1])
  return 1
end
redis.call('LREM', KEYS[3], 0, ARGV[3])
if redis.call('HGET', KEYS[1], 'last_node') == ARGV[2] then
  local history = redis.call('LRANGE', KEYS[3], 0, -1)
  local last_node, last_id = '', ''
  for i = #history, 1, -1 do
    local entry = cjson.decode(history[i])
    if redis.call('SISMEMBER', KEYS[2], entry[1]) == 1 then
      last_node, last_id = entry[1], entry[2]
      break
    end
  end
  redis.call('HSET', KEYS[1], 'last_node', last_node, 'last_id', last_id)
end
return 0
"""

_SET_IMAGE_DIGEST = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_digest', ARGV[1])
return 1
"""

# KEYS: node hash, nodes set. ARGV: address, then field/value pairs.
_STORE_NODE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

_UPDATE_NODE = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: nodes set. ARGV: node key prefix, lock key prefix, addresses...
_REMOVE_NODES = """
local removed = 0
for i = 3, #ARGV do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', ARGV[1] .. ARGV[i], ARGV[2] .. ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

# KEYS: node hash, nodes set, lock key. ARGV: address, ttl ms, locked_until, is_failure.
_LOCK_NODE = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return -1 end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'healing_locked_until', ARGV[3], 'healing_is_failure', ARGV[4])
return 1
"""

# Only a held lock is extended: an expired one may already belong to someone else.
# KEYS: lock key, node hash. ARGV: ttl ms, locked_until.
_EXTEND_NODE_LOCK = """
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'healing_locked_until', ARGV[2])
end
return 1
"""

# KEYS: lock key, node hash.
_UNLOCK_NODE = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'healing_locked_until', '0', 'healing_is_failure', '0')
end
return 1
"""

# KEYS: volume nodes, volumes set. ARGV: name, node.
_STORE_VOLUME = """
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: volume nodes, volumes set. ARGV: name, node.
_REMOVE_VOLUME = """
redis.call('SREM', KEYS[1], ARGV[2])
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS: the node's change count, its change log. ARGV: container ID, log limit.
_NOTE_CHANGE = """
redis.call('INCR', KEYS[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return 1
"""

# KEYS: each node's change count and change log, in pairs. ARGV: the counts seen, in order.
# Returns each node's count and its log (read only where something changed).
_CHANGES = """
local out = {}
for i = 1, #KEYS, 2 do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  out[#out + 1] = count
  if count ~= tonumber(ARGV[(i + 1) / 2]) then
    out[#out + 1] = redis.call('LRANGE', KEYS[i + 1], 0, -1)
  else
    out[#out + 1] = {}
  end
end
return out
"""


class RedisStorage(Storage):
    def __init__(self, url: str, prefix: str = "swarmproxy:") -> None:
        connection = _connect(url)
        self._client = connection.client
        self._helpers = connection.helpers
        self.address = connection.address
        self._prefix = _cluster_prefix(prefix) if connection.cluster else prefix
        register = self._client.register_script
        self._store_container = register(_STORE_CONTAINER)
        self._reserve_name = register(_RESERVE_NAME)
        self._assign_name = register(_ASSIGN_NAME)
        self._release_name = register(_RELEASE_NAME)
        self._remove_container = register(_REMOVE_CONTAINER)
        self._store_exec = register(_STORE_EXEC)
        self._remove_exec = register(_REMOVE_EXEC)
        self._store_image = register(_STORE_IMAGE)
        self._fetch_images_script = register(_FETCH_IMAGES)
        self._remove_image = register(_REMOVE_IMAGE)
        self._set_image_digest = register(_SET_IMAGE_DIGEST)
        self._store_node = register(_STORE_NODE)
        self._update_node = register(_UPDATE_NODE)
        self._remove_nodes = register(_REMOVE_NODES)
        self._lock_node = register(_LOCK_NODE)
        self._extend_node_lock = register(_EXTEND_NODE_LOCK)
        self._unlock_node = register(_UNLOCK_NODE)
        self._store_volume = register(_STORE_VOLUME)
        self._remove_volume = register(_REMOVE_VOLUME)
        self._note_change = register(_NOTE_CHANGE)
        self._changes = register(_CHANGES)

    @property
    def client(self) -> aioredis.Redis | RedisCluster:
        return self._client

    @property
    def prefix(self) -> str:
        """What every key starts with: the configured prefix, as a hash tag on a cluster."""
        return self._prefix

    @contextlib.contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        """Every call to Redis: its failures as StorageError, its round trip measured."""
        started = time.perf_counter()
        try:
            yield
        except MasterNotFoundError as e:
            metrics.STORAGE_ERRORS.labels(operation).inc()
            # redis-py's text spells out every sentinel client; the cause keeps it for logs.
            raise StorageError(
                f"redis at {self.address} is unreachable: no sentinel names that master as up"
            ) from e
        except (RedisError, RedisClusterException) as e:
            metrics.STORAGE_ERRORS.labels(operation).inc()
            verb = "is unreachable" if _unreachable(e) else "failed"
            raise StorageError(f"redis at {self.address} {verb}: {e}") from e
        finally:
            metrics.STORAGE_SECONDS.labels(operation).observe(time.perf_counter() - started)

    async def _run(
        self, operation: str, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> Any:
        with self._guard(operation):
            return await script(keys=keys, args=args)

    # --- keys -------------------------------------------------------------------
    def _key(self, kind: str, ident: str = "") -> str:
        return f"{self._prefix}{kind}{ident}"

    def _container_key(self, container_id: str) -> str:
        return self._key("container:", container_id)

    def _execs_key(self, container_id: str) -> str:
        return self._key("container-execs:", container_id)

    def _image_keys(self, repository: str) -> list[str]:
        return [
            self._key("image:", repository),
            self._key("image-nodes:", repository),
            self._key("image-history:", repository),
            self._key("images"),
        ]

    # --- containers -------------------------------------------------------------
    async def store_container(self, container_id: str, node: str, name: str = "") -> None:
        await self._run(
            "store_container",
            self._store_container,
            [self._container_key(container_id), self._key("containers")],
            [container_id, node, name],
        )

    async def retrieve_container(self, container_id: str) -> ContainerRecord | None:
        with self._guard("retrieve_container"):
            fields = await self._client.hgetall(self._container_key(container_id))
        return _container(container_id, _text_map(fields))

    async def remove_container(self, container_id: str) -> None:
        await self._run(
            "remove_container",
            self._remove_container,
            [
                self._container_key(container_id),
                self._key("containers"),
                self._execs_key(container_id),
            ],
            [container_id, self._key("name:"), self._key("exec:")],
        )

    async def retrieve_containers(self) -> list[ContainerRecord]:
        with self._guard("retrieve_containers"):
            ids = _texts(await self._client.zrangebylex(self._key("containers"), "-", "+"))
            async with self._client.pipeline(transaction=False) as pipe:
                for container_id in ids:
                    pipe.hgetall(self._container_key(container_id))
                hashes: list[dict[bytes | str, bytes | str]] = await pipe.execute()
        records = (
            _container(cid, _text_map(fields)) for cid, fields in zip(ids, hashes, strict=True)
        )
        return [record for record in records if record is not None]

    async def resolve_container_prefix(self, prefix: str) -> str | None:
        if not prefix:
            return None
        # Bytes, so the upper bound is a raw 0xff byte: no UTF-8 encoded ID contains one,
        # and every member that starts with the prefix sorts below prefix + 0xff.
        raw = prefix.encode()
        with self._guard("resolve_container_prefix"):
            matches = _texts(
                await self._client.zrangebylex(
                    self._key("containers"), b"[" + raw, b"(" + raw + b"\xff", start=0, num=2
                )
            )
        if len(matches) > 1:
            raise AmbiguousPrefix(prefix)
        return matches[0] if matches else None

    # --- names ------------------------------------------------------------------
    async def reserve_name(self, name: str, owner: str) -> str | None:
        current: str | None = await self._run(
            "reserve_name", self._reserve_name, [self._key("name:", name)], [owner]
        )
        # A retried SET whose first attempt landed finds the name held by ourselves.
        return None if current == owner else current

    async def assign_name(self, name: str, container_id: str, expected_owner: str) -> bool:
        moved = await self._run(
            "assign_name",
            self._assign_name,
            [self._key("name:", name), self._container_key(container_id)],
            [container_id, expected_owner, name],
        )
        return bool(moved)

    async def retrieve_name(self, name: str) -> str | None:
        with self._guard("retrieve_name"):
            owner = await self._client.get(self._key("name:", name))
        return None if owner is None else _text(owner)

    async def release_name(self, name: str, owner: str) -> None:
        await self._run(
            "release_name",
            self._release_name,
            [self._key("name:", name), self._container_key(owner)],
            [owner, name],
        )

    # --- execs ------------------------------------------------------------------
    async def store_exec(self, exec_id: str, container_id: str) -> None:
        await self._run(
            "store_exec",
            self._store_exec,
            [self._key("exec:", exec_id), self._execs_key(container_id)],
            [exec_id, container_id, self._key("container-execs:")],
        )

    async def retrieve_exec(self, exec_id: str) -> str | None:
        with self._guard("retrieve_exec"):
            container_id = await self._client.get(self._key("exec:", exec_id))
        return None if container_id is None else _text(container_id)

    async def remove_exec(self, exec_id: str) -> None:
        await self._run(
            "remove_exec",
            self._remove_exec,
            [self._key("exec:", exec_id)],
            [exec_id, self._key("container-execs:")],
        )

    # --- images -----------------------------------------------------------------
    async def store_image(self, repository: str, image_id: str, node: str) -> None:
        await self._run(
            "store_image",
            self._store_image,
            self._image_keys(repository),
            [repository, node, image_id, _history_entry(node, image_id), IMAGE_HISTORY_LIMIT],
        )

    async def retrieve_image(self, repository: str) -> ImageRecord | None:
        (record,) = await self._fetch_images([repository])
        return record

    async def _fetch_images(self, repositories: list[str]) -> list[ImageRecord | None]:
        if not repositories:
            return []
        keys = [key for repository in repositories for key in self._image_keys(repository)[:3]]
        replies: list[list[Any]] = await self._run(
            "_fetch_images", self._fetch_images_script, keys, []
        )
        records: list[ImageRecord | None] = []
        for repository, (flat, node_set, entries) in zip(repositories, replies, strict=True):
            if not node_set:
                records.append(None)
                continue
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            records.append(
                ImageRecord(
                    repository=repository,
                    nodes=set(node_set),
                    last_node=fields.get("last_node", ""),
                    last_id=fields.get("last_id", ""),
                    last_digest=fields.get("last_digest", ""),
                    history=[ImageHistory(*json.loads(entry)) for entry in entries],
                )
            )
        return records

    async def remove_image(self, repository: str, image_id: str, node: str) -> None:
        await self._run(
            "remove_image",
            self._remove_image,
            self._image_keys(repository),
            [repository, node, _history_entry(node, image_id)],
        )

    async def set_image_digest(self, repository: str, digest: str) -> None:
        await self._run(
            "set_image_digest", self._set_image_digest, [self._key("image:", repository)], [digest]
        )

    async def retrieve_images(self) -> list[ImageRecord]:
        with self._guard("retrieve_images"):
            repositories = sorted(_texts(await self._client.smembers(self._key("images"))))
        records = await self._fetch_images(repositories)
        return [record for record in records if record is not None]

    # --- nodes ------------------------------------------------------------------
    def _node_args(self, node: NodeRecord) -> list[Any]:
        return [
            node.address,
            *("name", node.name),
            *("metadata", json.dumps(node.metadata)),
            *("creation_status", node.creation_status),
            *("healing_locked_until", repr(node.healing.locked_until)),
            *("healing_is_failure", "1" if node.healing.is_failure else "0"),
            *("failures", str(node.failures)),
            *("last_error", node.last_error),
            *("last_error_at", repr(node.last_error_at)),
            *("last_success_at", repr(node.last_success_at)),
            *("disabled_until", repr(node.disabled_until)),
            *("tls", json.dumps(node.tls)),
        ]

    async def store_node(self, node: NodeRecord) -> None:
        stored = await self._run(
            "store_node",
            self._store_node,
            [self._key("node:", node.address), self._key("nodes")],
            self._node_args(node),
        )
        if not stored:
            raise ValueError(f"node {node.address} is already registered")

    async def retrieve_nodes(self) -> list[NodeRecord]:
        with self._guard("retrieve_nodes"):
            addresses = sorted(_texts(await self._client.smembers(self._key("nodes"))))
            return await self._fetch_nodes(addresses)

    async def _fetch_nodes(self, addresses: list[str]) -> list[NodeRecord]:
        async with self._client.pipeline(transaction=False) as pipe:
            for address in addresses:
                pipe.hgetall(self._key("node:", address))
            hashes: list[dict[bytes | str, bytes | str]] = await pipe.execute()
        return [
            _node(address, _text_map(fields))
            for address, fields in zip(addresses, hashes, strict=True)
            if fields
        ]

    async def retrieve_nodes_by_metadata(self, metadata: dict[str, str]) -> list[NodeRecord]:
        # Nodes are few: filtering every record here beats maintaining a metadata index.
        return [
            node
            for node in await self.retrieve_nodes()
            if all(node.metadata.get(k) == v for k, v in metadata.items())
        ]

    async def retrieve_node(self, address: str) -> NodeRecord | None:
        with self._guard("retrieve_node"):
            nodes = await self._fetch_nodes([address])
        return nodes[0] if nodes else None

    async def update_node(self, node: NodeRecord) -> None:
        updated = await self._run(
            "update_node",
            self._update_node,
            [self._key("node:", node.address), self._key("nodes")],
            self._node_args(node),
        )
        if not updated:
            raise KeyError(node.address)

    async def remove_node(self, address: str) -> None:
        if not await self._remove_some_nodes([address]):
            raise KeyError(address)

    async def remove_nodes(self, addresses: list[str]) -> None:
        if addresses:
            await self._remove_some_nodes(addresses)

    async def _remove_some_nodes(self, addresses: list[str]) -> int:
        removed = await self._run(
            "_remove_some_nodes",
            self._remove_nodes,
            [self._key("nodes")],
            [self._key("node:"), self._key("node-lock:"), *addresses],
        )
        return int(removed)

    async def lock_node_for_healing(self, address: str, is_failure: bool, timeout: float) -> bool:
        locked = await self._run(
            "lock_node_for_healing",
            self._lock_node,
            [self._key("node:", address), self._key("nodes"), self._key("node-lock:", address)],
            [address, _ttl_ms(timeout), repr(time.time() + timeout), "1" if is_failure else "0"],
        )
        if locked == -1:
            raise KeyError(address)
        return bool(locked)

    async def extend_node_lock(self, address: str, timeout: float) -> None:
        await self._run(
            "extend_node_lock",
            self._extend_node_lock,
            [self._key("node-lock:", address), self._key("node:", address)],
            [_ttl_ms(timeout), repr(time.time() + timeout)],
        )

    async def unlock_node(self, address: str) -> None:
        await self._run(
            "unlock_node",
            self._unlock_node,
            [self._key("node-lock:", address), self._key("node:", address)],
            [],
        )

    # --- volumes ----------------------------------------------------------------
    def _volume_keys(self, name: str) -> list[str]:
        return [self._key("volume-nodes:", name), self._key("volumes")]

    async def store_volume(self, name: str, node: str) -> None:
        await self._run("store_volume", self._store_volume, self._volume_keys(name), [name, node])

    async def retrieve_volume(self, name: str) -> set[str]:
        with self._guard("retrieve_volume"):
            return set(_texts(await self._client.smembers(self._key("volume-nodes:", name))))

    async def remove_volume(self, name: str, node: str) -> None:
        await self._run("remove_volume", self._remove_volume, self._volume_keys(name), [name, node])

    async def retrieve_volumes(self) -> dict[str, set[str]]:
        with self._guard("retrieve_volumes"):
            names = sorted(_texts(await self._client.smembers(self._key("volumes"))))
            # Each name's holders stand alone: no snapshot across names is needed.
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.smembers(self._key("volume-nodes:", name))
                holders: list[set[bytes | str]] = await pipe.execute()
        # A name removed between the two reads has no holders left: it is gone.
        return {
            name: set(_texts(nodes)) for name, nodes in zip(names, holders, strict=True) if nodes
        }

    # --- counters ---------------------------------------------------------------
    async def increment(self, key: str) -> int:
        with self._guard("increment"):
            return int(await self._client.incr(self._key("counter:", key)))

    async def counter(self, key: str) -> int:
        with self._guard("counter"):
            value = await self._client.get(self._key("counter:", key))
        return 0 if value is None else int(value)

    # --- container changes ------------------------------------------------------
    def _change_keys(self, node: str) -> list[str]:
        return [self._key("changes-count:", node), self._key("changes:", node)]

    async def note_container_change(self, node: str, container_id: str) -> None:
        await self._run(
            "note_container_change",
            self._note_change,
            self._change_keys(node),
            [container_id, CHANGE_LOG_LIMIT],
        )

    async def container_changes(self, since: dict[str, int]) -> dict[str, ChangeLog]:
        nodes = list(since)
        if not nodes:
            return {}
        keys = [key for node in nodes for key in self._change_keys(node)]
        answer = await self._run(
            "container_changes", self._changes, keys, [since[node] for node in nodes]
        )
        logs = {}
        for i, node in enumerate(nodes):
            count, ids = int(answer[2 * i]), _texts(answer[2 * i + 1])
            logs[node] = ChangeLog(count, changes_after(count, since[node], ids))
        return logs

    # --- rescheduling -----------------------------------------------------------
    async def store_reschedulable(self, container_id: str, plan: str) -> None:
        with self._guard("store_reschedulable"):
            await self._client.hset(self._key("reschedulable"), container_id, plan)

    async def retrieve_reschedulables(self) -> dict[str, str]:
        with self._guard("retrieve_reschedulables"):
            return _text_map(await self._client.hgetall(self._key("reschedulable")))

    async def remove_reschedulable(self, container_id: str) -> None:
        with self._guard("remove_reschedulable"):
            await self._client.hdel(self._key("reschedulable"), container_id)

    # --- lifecycle --------------------------------------------------------------
    async def ping(self) -> None:
        with self._guard("ping"):
            await self._client.ping()

    async def close(self) -> None:
        with self._guard("close"):
            await self._client.aclose()
            for helper in self._helpers:
                await helper.aclose()


# --- connecting -------------------------------------------------------------------


@dataclass(frozen=True)
class _Connection:
    client: aioredis.Redis | RedisCluster
    # Where it points, for error messages; never the credentials.
    address: str
    cluster: bool = False
    # Clients it relies on, closed with it: a Sentinel's own connections to the sentinels.
    helpers: tuple[aioredis.Redis, ...] = ()


@dataclass(frozen=True)
class _HostsURL:
    """A URL naming several hosts (the sentinels, or a cluster's first nodes)."""

    hosts: list[tuple[str, int]]
    path: str
    # Credentials, TLS and query options, as redis-py reads them from a one-host URL.
    options: dict[str, Any]


def _connect(url: str) -> _Connection:
    scheme = urlsplit(url).scheme.lower()
    if scheme.endswith("+sentinel"):
        return _connect_sentinel(url)
    if scheme.endswith("+cluster"):
        return _connect_cluster(url)
    client = aioredis.Redis.from_url(url, **_client_options())
    return _Connection(client, _describe(client.connection_pool.connection_kwargs))


def _client_options(
    retries: int = _RETRIES,
    backoff: AbstractBackoff | None = None,
) -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _SOCKET_TIMEOUT,
        "retry": Retry(backoff or ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries),
    }


def _connect_sentinel(url: str) -> _Connection:
    parsed = _parse_hosts_url(url, default_port=26379)
    path = [unquote(part) for part in parsed.path.split("/") if part]
    if len(path) not in (1, 2):
        raise ValueError(
            f"storage URL {_without_credentials(url)!r}: expected "
            "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTERNAME[/DB]"
        )
    options = parsed.options
    db = _database(url, path[1] if len(path) == 2 else options.get("db", 0))
    options["db"] = db
    # The sentinels' own credentials; the URL's user and password are the master's.
    sentinel_options: dict[str, Any] = {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _SOCKET_TIMEOUT,
        # The master's retries ask the sentinels again: retries of their own would multiply
        # (redis-py's default spent 14 s on one unreachable sentinel).
        "retry": Retry(NoBackoff(), 0),
    }
    for name in ("sentinel_username", "sentinel_password"):
        if name in options:
            sentinel_options[name.removeprefix("sentinel_")] = options.pop(name)
    # rediss+sentinel: TLS to the sentinels as to the master.
    sentinel_options.update((k, v) for k, v in options.items() if k.startswith("ssl"))
    # redis-py's Sentinel carries no annotations.
    sentinel = Sentinel(parsed.hosts, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call,unused-ignore]
    master = path[0]
    defaults = _client_options(_FAILOVER_RETRIES, EqualJitterBackoff(cap=1.0, base=0.25))
    defaults["connection_class"] = _MasterSSLConnection if options.get("ssl") else _MasterConnection
    client = sentinel.master_for(master, **{**defaults, **options})
    return _Connection(
        client,
        f"sentinel {_hosts(parsed.hosts)}, master {master} (db {db})",
        helpers=tuple(sentinel.sentinels),
    )


class _MasterConnection(SentinelManagedConnection):
    """A connection that asks the sentinels for the master each time it (re)connects.

    redis-py (seen with 8.1) asks them only when the pool hands out a connection: a command
    retried after the old master refused it (read-only once demoted) reconnects to that
    same old master, and every retry fails alike.
    """

    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call]


class _MasterSSLConnection(_MasterConnection, SentinelManagedSSLConnection):
    pass


class _Cluster(RedisCluster):
    """A cluster client that learns the slot layout before its first command.

    redis-py (seen with 8.1) lets commands that arrive together on a new client race its
    discovery of the cluster: their connections break, and its retries then run some of
    them twice (50 concurrent INCRs counted 51 to 54). One discovery, under its lock,
    before each command (at once a no-op after the first) avoids that.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _connect_cluster(url: str) -> _Connection:
    parsed = _parse_hosts_url(url, default_port=6379)
    options = parsed.options
    query_db = options.pop("db", 0)
    if _database(url, parsed.path.strip("/") or query_db) != 0:
        raise ValueError(f"storage URL {_without_credentials(url)!r}: a cluster has only db 0")
    defaults = {
        **_client_options(),
        # redis-py caps each node at 100 connections and fails the command past that, where
        # the one-server client has no cap: here too the server's maxclients is the limit.
        "max_connections": 2**31,
    }
    client = _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
        **{**defaults, **options},
    )
    return _Connection(client, f"cluster {_hosts(parsed.hosts)}", cluster=True)


def _parse_hosts_url(url: str, default_port: int) -> _HostsURL:
    parts = urlsplit(url)
    userinfo, at, host_list = parts.netloc.rpartition("@")
    hosts: list[tuple[str, int]] = []
    for item in host_list.split(","):
        host = urlsplit(f"//{item}")
        try:
            port = host.port or default_port
        except ValueError:
            port = 0
        if not host.hostname or not port:
            raise ValueError(
                f"storage URL {_without_credentials(url)!r}: {item!r} is not HOST[:PORT]"
            )
        hosts.append((host.hostname, port))
    tls = parts.scheme.lower().startswith("rediss")
    one_host = f"{'rediss' if tls else 'redis'}://{userinfo}{at}localhost?{parts.query}"
    options: dict[str, Any] = dict(parse_url(one_host))
    del options["host"]
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return _HostsURL(hosts, parts.path, options)


def _database(url: str, value: object) -> int:
    try:
        db = int(str(value))
    except ValueError:
        db = -1
    if db < 0:
        raise ValueError(f"storage URL {_without_credentials(url)!r}: bad db {value!r}")
    return db


def _hosts(hosts: list[tuple[str, int]]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _cluster_prefix(prefix: str) -> str:
    """The prefix as a hash tag, so that every key of the index shares one cluster slot."""
    tagged = prefix
    if not _hash_tag(prefix):
        colon = ":" if prefix.endswith(":") else ""
        tagged = "{" + prefix.removesuffix(":") + "}" + colon
    if not _hash_tag(tagged):
        raise ValueError(
            f"storage prefix {prefix!r} cannot be a hash tag; a Redis Cluster needs one to "
            "keep the index in one slot"
        )
    return tagged


def _hash_tag(key: str) -> str:
    """What a Redis Cluster hashes in place of the whole key: the text between the first
    "{" and the next "}", when not empty."""
    start = key.find("{")
    end = key.find("}", start + 1) if start != -1 else -1
    return key[start + 1 : end] if end != -1 else ""


def _unreachable(error: BaseException) -> bool:
    # A cluster client that reached none of its nodes raises a RedisClusterException caused
    # by the last connection error.
    return any(
        isinstance(e, (RedisConnectionError, RedisTimeoutError)) for e in (error, error.__cause__)
    )


def _describe(kwargs: Mapping[str, Any]) -> str:
    """Where the client points, for error messages; never the credentials."""
    if "path" in kwargs:
        return f"unix://{kwargs['path']} (db {kwargs.get('db', 0)})"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"{host}:{port} (db {kwargs.get('db', 0)})"


# The client decodes replies (decode_responses=True); redis-py's types cannot know that.
def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _texts(values: Iterable[bytes | str]) -> list[str]:
    return [_text(v) for v in values]


def _text_map(fields: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def _ttl_ms(timeout: float) -> int:
    # PX rejects 0; a non-positive timeout still takes (and at once drops) the lock.
    return max(1, math.ceil(timeout * 1000))


def _history_entry(node: str, image_id: str) -> str:
    # Compact and deterministic: LREM matches entries by their exact bytes.
    return json.dumps([node, image_id], separators=(",", ":"))


def _container(container_id: str, fields: Mapping[str, str]) -> ContainerRecord | None:
    if "node" not in fields:
        return None
    return ContainerRecord(container_id, fields["node"], fields.get("name", ""))


def _node(address: str, fields: Mapping[str, str]) -> NodeRecord:
    return NodeRecord(
        address=address,
        name=fields.get("name", ""),
        metadata=json.loads(fields.get("metadata", "{}")),
        creation_status=fields.get("creation_status", "created"),
        healing=HealingData(
            locked_until=float(fields.get("healing_locked_until", "0")),
            is_failure=fields.get("healing_is_failure") == "1",
        ),
        failures=int(fields.get("failures", "0")),
        last_error=fields.get("last_error", ""),
        last_error_at=float(fields.get("last_error_at", "0")),
        last_success_at=float(fields.get("last_success_at", "0")),
        disabled_until=float(fields.get("disabled_until", "0")),
        tls=json.loads(fields.get("tls", "{}")),
    )
