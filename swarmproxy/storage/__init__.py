"""Cluster-wide storage: where containers, names, execs, images and nodes are indexed."""

from __future__ import annotations

from urllib.parse import urlsplit

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
)
from swarmproxy.storage.memory import MemoryStorage

__all__ = [
    "CHANGE_LOG_LIMIT",
    "IMAGE_HISTORY_LIMIT",
    "AmbiguousPrefix",
    "ChangeLog",
    "ContainerRecord",
    "HealingData",
    "ImageHistory",
    "ImageRecord",
    "MemoryStorage",
    "NodeRecord",
    "Storage",
    "StorageError",
    "open_storage",
]

_REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)


def open_storage(url: str, prefix: str = "swarmproxy:") -> Storage:
    """The storage a URL names (user and password, where needed, as in ``redis://``):

    - ``memory://``: in this process;
    - ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://`` (TLS),
      ``unix://[[USER]:PASSWORD@]/PATH.sock[?db=DB]``: one Redis server;
    - ``redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]``
      (``rediss+sentinel://``: TLS to the sentinels and the master): the master that the
      sentinels (port 26379 by default) name MASTER, followed through failovers. The
      user and password are the master's; sentinels that want their own take
      ``?sentinel_username=...&sentinel_password=...``;
    - ``redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/]``
      (``rediss+cluster://``): a Redis Cluster, found from any of the nodes named.

    Query options (``?socket_timeout=10``, ``ssl_ca_certs=/path``, ...) go to redis-py as
    in its URLs.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryStorage()
    if scheme in _REDIS_SCHEMES:
        # Imported here so the embedded default does not pay for the Redis client.
        from swarmproxy.storage.redis import RedisStorage

        return RedisStorage(url, prefix)
    accepted = ", ".join(f"{s}://" for s in ("memory", *_REDIS_SCHEMES))
    raise ValueError(f"unsupported storage URL {url!r}: expected one of {accepted}")
