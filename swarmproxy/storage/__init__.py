"""Cluster-wide storage: where containers, names, execs, images and nodes are indexed."""

from __future__ import annotations

from urllib.parse import urlsplit

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
from swarmproxy.storage.memory import MemoryStorage

__all__ = [
    "IMAGE_HISTORY_LIMIT",
    "AmbiguousPrefix",
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

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_storage(url: str, prefix: str = "swarmproxy:") -> Storage:
    """The storage a URL names: memory:// or redis://host:port/db (rediss://, unix://)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryStorage()
    if scheme in _REDIS_SCHEMES:
        # Imported here so the embedded default does not pay for the Redis client.
        from swarmproxy.storage.redis import RedisStorage

        return RedisStorage(url, prefix)
    accepted = ", ".join(f"{s}://" for s in ("memory", *_REDIS_SCHEMES))
    raise ValueError(f"unsupported storage URL {url!r}: expected one of {accepted}")
