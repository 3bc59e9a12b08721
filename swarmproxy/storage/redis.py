"""Redis storage: one index shared by every proxy replica.

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

Multi-key changes run as Lua scripts (one round trip, atomic). Some scripts derive keys
from values they read (a container's name, its execs), which a Redis Cluster would
reject; the proxy targets a single Redis (or a primary with replicas).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarmproxy.storage.base import (
    IMAGE_HISTORY_LIMIT,
    AmbiguousPrefix,
    ContainerRecord,
    HealingData,
    ImageHistory,
    ImageRecord,
    NodeRecord,
    Storage,
    StorageError,
)

# A proxy request waits on storage: fail within seconds rather than hang, but retry a
# little so a pooled connection left dead by a Redis restart is replaced transparently.
_SOCKET_TIMEOUT = 5.0
_RETRIES = 2

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
_REMOVE_VOLUME = """
redis.call('SREM', KEYS[1], ARGV[2])
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
"""


class RedisStorage(Storage):
    def __init__(self, url: str, prefix: str = "swarmproxy:") -> None:
        self._client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_SOCKET_TIMEOUT,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), _RETRIES),
        )
        self._prefix = prefix
        self.address = _describe(self._client.connection_pool.connection_kwargs)
        register = self._client.register_script
        self._reserve_name = register(_RESERVE_NAME)
        self._assign_name = register(_ASSIGN_NAME)
        self._release_name = register(_RELEASE_NAME)
        self._remove_container = register(_REMOVE_CONTAINER)
        self._store_exec = register(_STORE_EXEC)
        self._remove_exec = register(_REMOVE_EXEC)
        self._remove_image = register(_REMOVE_IMAGE)
        self._set_image_digest = register(_SET_IMAGE_DIGEST)
        self._store_node = register(_STORE_NODE)
        self._update_node = register(_UPDATE_NODE)
        self._remove_nodes = register(_REMOVE_NODES)
        self._lock_node = register(_LOCK_NODE)
        self._extend_node_lock = register(_EXTEND_NODE_LOCK)
        self._unlock_node = register(_UNLOCK_NODE)
        self._remove_volume = register(_REMOVE_VOLUME)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as e:
            raise StorageError(f"redis at {self.address} is unreachable: {e}") from e
        except RedisError as e:
            raise StorageError(f"redis at {self.address} failed: {e}") from e

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        with self._guard():
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
        key = self._container_key(container_id)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, "node", node)
                if name:
                    pipe.hset(key, "name", name)
                pipe.zadd(self._key("containers"), {container_id: 0})
                await pipe.execute()

    async def retrieve_container(self, container_id: str) -> ContainerRecord | None:
        with self._guard():
            fields = await self._client.hgetall(self._container_key(container_id))
        return _container(container_id, _text_map(fields))

    async def remove_container(self, container_id: str) -> None:
        await self._run(
            self._remove_container,
            [
                self._container_key(container_id),
                self._key("containers"),
                self._execs_key(container_id),
            ],
            [container_id, self._key("name:"), self._key("exec:")],
        )

    async def retrieve_containers(self) -> list[ContainerRecord]:
        with self._guard():
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
        with self._guard():
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
            self._reserve_name, [self._key("name:", name)], [owner]
        )
        # A retried SET whose first attempt landed finds the name held by ourselves.
        return None if current == owner else current

    async def assign_name(self, name: str, container_id: str, expected_owner: str) -> bool:
        moved = await self._run(
            self._assign_name,
            [self._key("name:", name), self._container_key(container_id)],
            [container_id, expected_owner, name],
        )
        return bool(moved)

    async def retrieve_name(self, name: str) -> str | None:
        with self._guard():
            owner = await self._client.get(self._key("name:", name))
        return None if owner is None else _text(owner)

    async def release_name(self, name: str, owner: str) -> None:
        await self._run(
            self._release_name,
            [self._key("name:", name), self._container_key(owner)],
            [owner, name],
        )

    # --- execs ------------------------------------------------------------------
    async def store_exec(self, exec_id: str, container_id: str) -> None:
        await self._run(
            self._store_exec,
            [self._key("exec:", exec_id), self._execs_key(container_id)],
            [exec_id, container_id, self._key("container-execs:")],
        )

    async def retrieve_exec(self, exec_id: str) -> str | None:
        with self._guard():
            container_id = await self._client.get(self._key("exec:", exec_id))
        return None if container_id is None else _text(container_id)

    async def remove_exec(self, exec_id: str) -> None:
        await self._run(
            self._remove_exec,
            [self._key("exec:", exec_id)],
            [exec_id, self._key("container-execs:")],
        )

    # --- images -----------------------------------------------------------------
    async def store_image(self, repository: str, image_id: str, node: str) -> None:
        image, nodes, history, images = self._image_keys(repository)
        entry = _history_entry(node, image_id)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(image, mapping={"last_node": node, "last_id": image_id})
                pipe.sadd(nodes, node)
                # A repeated pair moves to the newest end instead of crowding out others.
                pipe.lrem(history, 0, entry)
                pipe.rpush(history, entry)
                pipe.ltrim(history, -IMAGE_HISTORY_LIMIT, -1)
                pipe.sadd(images, repository)
                await pipe.execute()

    async def retrieve_image(self, repository: str) -> ImageRecord | None:
        with self._guard():
            (record,) = await self._fetch_images([repository])
        return record

    async def _fetch_images(self, repositories: list[str]) -> list[ImageRecord | None]:
        # One MULTI so each record is a consistent snapshot.
        async with self._client.pipeline(transaction=True) as pipe:
            for repository in repositories:
                image, nodes, history, _ = self._image_keys(repository)
                pipe.hgetall(image)
                pipe.smembers(nodes)
                pipe.lrange(history, 0, -1)
            replies: list[Any] = await pipe.execute()
        records: list[ImageRecord | None] = []
        for i, repository in enumerate(repositories):
            fields, node_set, entries = replies[3 * i : 3 * i + 3]
            if not node_set:
                records.append(None)
                continue
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
            self._remove_image,
            self._image_keys(repository),
            [repository, node, _history_entry(node, image_id)],
        )

    async def set_image_digest(self, repository: str, digest: str) -> None:
        await self._run(self._set_image_digest, [self._key("image:", repository)], [digest])

    async def retrieve_images(self) -> list[ImageRecord]:
        with self._guard():
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
            self._store_node,
            [self._key("node:", node.address), self._key("nodes")],
            self._node_args(node),
        )
        if not stored:
            raise ValueError(f"node {node.address} is already registered")

    async def retrieve_nodes(self) -> list[NodeRecord]:
        with self._guard():
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
        with self._guard():
            nodes = await self._fetch_nodes([address])
        return nodes[0] if nodes else None

    async def update_node(self, node: NodeRecord) -> None:
        updated = await self._run(
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
            self._remove_nodes,
            [self._key("nodes")],
            [self._key("node:"), self._key("node-lock:"), *addresses],
        )
        return int(removed)

    async def lock_node_for_healing(self, address: str, is_failure: bool, timeout: float) -> bool:
        locked = await self._run(
            self._lock_node,
            [self._key("node:", address), self._key("nodes"), self._key("node-lock:", address)],
            [address, _ttl_ms(timeout), repr(time.time() + timeout), "1" if is_failure else "0"],
        )
        if locked == -1:
            raise KeyError(address)
        return bool(locked)

    async def extend_node_lock(self, address: str, timeout: float) -> None:
        await self._run(
            self._extend_node_lock,
            [self._key("node-lock:", address), self._key("node:", address)],
            [_ttl_ms(timeout), repr(time.time() + timeout)],
        )

    async def unlock_node(self, address: str) -> None:
        await self._run(
            self._unlock_node,
            [self._key("node-lock:", address), self._key("node:", address)],
            [],
        )

    # --- volumes ----------------------------------------------------------------
    def _volume_keys(self, name: str) -> list[str]:
        return [self._key("volume-nodes:", name), self._key("volumes")]

    async def store_volume(self, name: str, node: str) -> None:
        nodes, volumes = self._volume_keys(name)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.sadd(nodes, node)
                pipe.sadd(volumes, name)
                await pipe.execute()

    async def retrieve_volume(self, name: str) -> set[str]:
        with self._guard():
            return set(_texts(await self._client.smembers(self._key("volume-nodes:", name))))

    async def remove_volume(self, name: str, node: str) -> None:
        await self._run(self._remove_volume, self._volume_keys(name), [name, node])

    async def retrieve_volumes(self) -> dict[str, set[str]]:
        with self._guard():
            names = sorted(_texts(await self._client.smembers(self._key("volumes"))))
            async with self._client.pipeline(transaction=True) as pipe:
                for name in names:
                    pipe.smembers(self._key("volume-nodes:", name))
                holders: list[set[bytes | str]] = await pipe.execute()
        # A name removed between the two reads has no holders left: it is gone.
        return {
            name: set(_texts(nodes)) for name, nodes in zip(names, holders, strict=True) if nodes
        }

    # --- counters ---------------------------------------------------------------
    async def increment(self, key: str) -> int:
        with self._guard():
            return int(await self._client.incr(self._key("counter:", key)))

    async def counter(self, key: str) -> int:
        with self._guard():
            value = await self._client.get(self._key("counter:", key))
        return 0 if value is None else int(value)

    # --- lifecycle --------------------------------------------------------------
    async def ping(self) -> None:
        with self._guard():
            await self._client.ping()

    async def close(self) -> None:
        with self._guard():
            await self._client.aclose()


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
