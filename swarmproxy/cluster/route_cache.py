"""Which node holds a container, kept in process: the hot path asks storage once per ID.

A container never moves, so its full ID names its node for as long as it lives: an entry
can be stale only by the container being gone, and then the node answers for that ID
exactly as a daemon would (404). Names and prefixes are not kept here: what they point
to changes with renames and removes made through other proxies.
"""

from __future__ import annotations

from collections import OrderedDict

# About 200 bytes an entry: a few MB at most, however large the index.
DEFAULT_SIZE = 16384


class RouteCache:
    """A bounded least-recently-used map of full container ID to node address."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, container_id: str) -> str | None:
        address = self._entries.get(container_id)
        if address is not None:
            self._entries.move_to_end(container_id)
        return address

    def keep(self, container_id: str, address: str) -> None:
        self._entries[container_id] = address
        self._entries.move_to_end(container_id)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, container_id: str) -> None:
        self._entries.pop(container_id, None)
