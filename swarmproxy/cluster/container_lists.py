"""`ps` served from each node's kept container list (node_containers), asking a node only
for what changed since the last `ps`: read-your-writes for the proxy's own changes, in this
process at once and in other replicas through storage's change log.

A node whose list is not trusted (its event stream is down, storage cannot say what other
replicas changed, or the client speaks another API version than the list was read in) is
listed directly, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.parse import quote

from swarmproxy.cluster.node import Node
from swarmproxy.cluster.node_containers import RUNNING_STATES
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import DockerError, NodeUnavailable, node_message
from swarmproxy.log import log_event
from swarmproxy.storage import CHANGE_LOG_LIMIT, StorageError

log = logging.getLogger("swarmproxy.cluster")

EVERY_CONTAINER = "/containers/json?all=1"
# Containers a `ps` inspects on one node for their exact times; a node with more (its list
# was just read whole) is listed directly while they are learnt in the background.
INSPECT_MAX = 32
# Inspects at once on one node.
_INSPECTS = 8

# A listing's entries from every node, sorted together: (nanoseconds created, the negated
# rank in its node's own list, the entry's JSON in parts). The parts are joined once, for
# the whole answer: entries are large, and most of each is the same at every `ps`.
Entry = tuple[int, int, tuple[bytes, ...]]


@dataclass(frozen=True)
class KeptQuery:
    """A `ps` the kept lists answer: with `all` or not, and label filters (`key` or
    `key=value`, every one to match)."""

    show_all: bool = False
    labels: tuple[str, ...] = ()

    def admits(self, state: str, labels: Mapping[str, str] | None) -> bool:
        if not self.show_all and state not in RUNNING_STATES:
            return False
        return all(_has_label(labels or {}, wanted) for wanted in self.labels)


def _has_label(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def label_filters(raw: str) -> tuple[str, ...] | None:
    """The label filters of a `filters` query parameter; None when it holds anything else
    (or is not what the daemon reads), for the nodes to judge."""
    if not raw.strip():
        return ()
    try:
        filters = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(filters, dict) or not set(filters) <= {"label"}:
        return None
    # The daemon reads both forms: {"label": {"a=b": true}} and the older ["a=b"].
    wanted = filters.get("label") or {}
    if isinstance(wanted, dict) and all(v is True for v in wanted.values()):
        wanted = list(wanted)
    if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
        return None
    return tuple(wanted)


def _by_id(container_ids: Iterable[str]) -> str:
    return f"{EVERY_CONTAINER}&filters={quote(json.dumps({'id': sorted(container_ids)}))}"


def _node_tail(node: Node) -> bytes:
    """What closes each entry: the node it is on (classic Swarm's `Node`), encoded again
    only when it changed."""
    described = node.describe()
    cached = node.containers.node_tail
    if cached is None or cached[0] != described:
        encoded = json.dumps(described, separators=(",", ":")).encode()
        cached = node.containers.node_tail = (described, b',"Node":' + encoded + b"}")
    return cached[1]


def _as_listed(node: Node, listing: Sequence[dict[str, Any]]) -> list[Entry]:
    """Entries of a node's own listing, in its own order (it sorts with full precision)."""
    tail = _node_tail(node)
    return [
        (
            int(summary.get("Created") or 0) * 1_000_000_000,
            -rank,
            (json.dumps(summary, separators=(",", ":")).encode()[:-1], tail),
        )
        for rank, summary in enumerate(listing)
    ]


def _settled(node: Node) -> bool:
    """Nothing to ask the node before its list is shown: no container stale or untimed."""
    containers = node.containers
    if containers.relist or containers.reading.locked() or containers.stale():
        return False
    return all(entry.complete for entry in containers.entries.values())


def _rendered(node: Node, query: KeptQuery, now: float) -> list[Entry]:
    """The node's entries from its list, their status as of `now`. A container marked
    during the last reading is shown as that reading found it, till the next."""
    tail = _node_tail(node)
    return [
        (
            entry.sort_key(),
            0,
            (entry.head, encode_basestring_ascii(entry.render(now)).encode(), entry.tail, tail),
        )
        for entry in node.containers.entries.values()
        if query.admits(entry.state, entry.labels)
    ]


class ContainerLists(ClusterParts):
    """Mixed into Cluster."""

    # --- the proxy's own changes ------------------------------------------------------
    @contextlib.asynccontextmanager
    async def changing(self, node: Node, container_id: str) -> AsyncIterator[None]:
        """While the proxy changes a container, this process's `ps` reads it afresh."""
        node.containers.begin_change(container_id)
        try:
            yield
        finally:
            node.containers.end_change(container_id)

    async def note_change(self, node: Node, container_id: str) -> None:
        """A change the proxy made, told to every replica before its client hears of it."""
        node.containers.mark(container_id)
        try:
            await self.storage.note_container_change(node.address, container_id)
        except StorageError as e:
            # Other replicas list every node directly while storage is out.
            log_event(log, logging.DEBUG, "change not noted", node=node.name, error=str(e))

    # --- ps ---------------------------------------------------------------------------
    async def list_kept(self, query: KeptQuery, path: str, api_version: str = "") -> bytes:
        """`GET /containers/json` as JSON: from the kept lists where they are trusted, else
        from the nodes (`path` is what they are asked, the same query)."""
        nodes = self.callable_nodes()
        trusted = await self._take_changes(
            [n for n in nodes if n.containers.live and api_version in ("", n.api_version)]
        )

        merged: list[Entry] = []
        # A node whose list needs nothing from it is rendered here and now: most are, and a
        # task and a timer for each of hundreds of nodes would cost more than the listing.
        asked = []
        now = time.time()
        for node in nodes:
            if node in trusted and _settled(node):
                merged.extend(_rendered(node, query, now))
            else:
                asked.append(node)

        async def entries(node: Node) -> list[Entry]:
            if node in trusted:
                return await self._kept_entries(node, query)
            return _as_listed(node, await self._listing(node, path))

        for _node, result in await self.fan_out(entries, asked) if asked else ():
            if isinstance(result, NodeUnavailable):
                continue
            if isinstance(result, BaseException):
                raise result
            merged.extend(result)
        merged.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        parts = [b"["]
        for entry in merged:
            parts.extend(entry[2])
            parts.append(b",")
        parts[-1] = b"]\n" if merged else b"[]\n"
        return b"".join(parts)

    async def _take_changes(self, nodes: list[Node]) -> set[Node]:
        """Mark what other replicas changed on `nodes` since the last look; the nodes whose
        lists can be trusted for it (none while storage cannot say)."""
        if not nodes:
            return set()
        seen = {n.address: n.containers.changes_seen or 0 for n in nodes}
        try:
            logs = await self.storage.container_changes(seen)
        except StorageError:
            return set()
        for node in nodes:
            containers, changes = node.containers, logs[node.address]
            if containers.changes_seen is None or changes.ids is None:
                containers.relist = True
            else:
                for container_id in changes.ids:
                    containers.mark(container_id)
            containers.changes_seen = changes.count
        return set(nodes)

    async def _listing(self, node: Node, path: str) -> list[dict[str, Any]]:
        status, body = await node.client.json("GET", path)
        if not 200 <= status < 300:
            raise DockerError(node_message(body, status), status)
        return body if isinstance(body, list) else []

    async def _kept_entries(self, node: Node, query: KeptQuery) -> list[Entry]:
        containers = node.containers
        async with containers.reading:
            since = containers.marks
            stale = containers.stale()
            whole: list[dict[str, Any]] | None = None
            if containers.relist or len(stale) > CHANGE_LOG_LIMIT:
                whole = await self._listing(node, EVERY_CONTAINER)
                containers.update(whole, None, since)
            elif stale:
                containers.update(await self._listing(node, _by_id(stale)), stale, since)
            incomplete = containers.incomplete()
            if len(incomplete) <= INSPECT_MAX:
                await self._learn(node, incomplete)
                return _rendered(node, query, time.time())
        # A list just read whole: its times are learnt beside, and the node says it all now.
        self._learn_in_background(node)
        if whole is None:
            whole = await self._listing(node, EVERY_CONTAINER)
        admitted = [s for s in whole if query.admits(str(s.get("State")), s.get("Labels"))]
        return _as_listed(node, admitted)

    async def _learn(self, node: Node, container_ids: list[str]) -> None:
        """Each container's exact creation, start and finish times, from its inspect."""
        containers = node.containers
        since = containers.marks
        room = asyncio.Semaphore(_INSPECTS)

        async def learn(container_id: str) -> None:
            async with room:
                status, inspected = await node.client.json(
                    "GET", f"/containers/{container_id}/json"
                )
            if status == 200 and isinstance(inspected, dict):
                containers.learn(container_id, inspected, since)
            else:
                # Gone meanwhile: the next reading drops it.
                containers.mark(container_id)

        await asyncio.gather(*(learn(c) for c in container_ids))

    def _learn_in_background(self, node: Node) -> None:
        containers = node.containers
        if containers.learning:
            return
        containers.learning = True

        async def learn_all() -> None:
            # Each container is asked once: one gone meanwhile stays incomplete till listed.
            asked: set[str] = set()
            try:
                while True:
                    async with containers.reading:
                        left = [c for c in containers.incomplete() if c not in asked]
                        if not left:
                            return
                        batch = left[:INSPECT_MAX]
                        asked.update(batch)
                        await self._learn(node, batch)
            finally:
                containers.learning = False

        self._in_background(learn_all())
