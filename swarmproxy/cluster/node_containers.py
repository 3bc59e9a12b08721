"""One node's containers as its `GET /containers/json?all=1` lists them, kept in process so
that `ps` over many nodes need ask none of them while nothing changed (classic Swarm's way).

The list is trusted only while the node's event stream is followed (`live`). A container
is marked stale by its events and by the proxy's own changes to it; one the proxy is
changing stays stale until the change is over, so that no listing taken meanwhile passes
for its outcome. The next `ps` asks the node for the stale containers only. Every mark
is numbered: what a reading brings is kept, but a mark made after the reading began keeps
the container stale for the next one.

Each entry holds its summary encoded once, with `Status` cut out: the status is rendered
at every listing from when the container started or finished (see status_text).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from swarmproxy.cluster.status_text import STARTED, StatusText, parse_status
from swarmproxy.cluster.timestamps import parse_nanoseconds, parse_timestamp

# What `ps` without `all` shows: the daemon's running containers, paused or restarting too.
RUNNING_STATES = frozenset({"running", "paused", "restarting"})

_SLOT = json.dumps("\x00status\x00").encode()
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _moment(stamp: Any) -> float | None:
    """Seconds since the epoch; 0.0 for Go's zero time (never happened)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    if stamp == _ZERO_TIME:
        return 0.0
    return parse_timestamp(stamp)


@dataclass(slots=True)
class Listed:
    # The summary's JSON before Status's value, and after it without the closing brace.
    head: bytes
    tail: bytes
    state: str
    # As the node last wrote it, and taken apart to be rendered again.
    status: str
    text: StatusText
    # Whole seconds, as listed; nanoseconds once an inspect told (the daemon's sort key).
    second: int
    # For `ps --filter label=...`.
    labels: dict[str, str]
    created: int | None = None
    # Seconds since the epoch (0.0: never), from an inspect or the events; None: not known.
    started: float | None = None
    finished: float | None = None

    @property
    def complete(self) -> bool:
        """Ordered and rendered without asking the node."""
        if self.created is None:
            return False
        if not self.text.since:
            return True
        return (self.started if self.text.since == STARTED else self.finished) is not None

    def render(self, now: float) -> str:
        rendered = self.text.render(self.started, self.finished, now)
        return self.status if rendered is None else rendered

    def sort_key(self) -> int:
        return self.created if self.created is not None else self.second * 1_000_000_000


def listed(summary: Mapping[str, Any], before: Listed | None = None) -> Listed:
    """An entry from a node's summary; what `before` knew of its times is kept (the events
    keep them current while the list is live)."""
    status = str(summary.get("Status") or "")
    encoded = json.dumps({**summary, "Status": "\x00status\x00"}, separators=(",", ":"))
    head, _, tail = encoded.encode().partition(_SLOT)
    entry = Listed(
        head=head,
        tail=tail[:-1],
        state=str(summary.get("State") or ""),
        status=status,
        text=parse_status(status),
        second=int(summary.get("Created") or 0),
        labels=dict(summary.get("Labels") or {}),
    )
    if before is not None:
        entry.created, entry.started, entry.finished = (
            before.created,
            before.started,
            before.finished,
        )
    return entry


class NodeContainers:
    def __init__(self) -> None:
        self.entries: dict[str, Listed] = {}
        # Filled from a listing taken while the node's events are followed.
        self.live = False
        # Storage's count of the changes replicas noted on this node, as last read.
        self.changes_seen: int | None = None
        # The whole list is to be read again (more changes than storage's log keeps).
        self.relist = False
        # One reading of the node at a time; a `ps` that waited finds it done.
        self.reading = asyncio.Lock()
        # The node as each entry names it, and that encoded (see container_lists).
        self.node_tail: tuple[dict[str, Any], bytes] | None = None
        # Times are being learnt in the background (a list read whole, many to inspect).
        self.learning = False
        self._marks = 0
        self._stale: dict[str, int] = {}
        self._changing: Counter[str] = Counter()
        # Containers destroyed while a reading may be under way, with their marks.
        self._destroyed: dict[str, int] = {}

    # --- marks ------------------------------------------------------------------
    def mark(self, container_id: str) -> None:
        self._marks += 1
        self._stale[container_id] = self._marks

    def begin_change(self, container_id: str) -> None:
        self._changing[container_id] += 1
        self.mark(container_id)

    def end_change(self, container_id: str) -> None:
        self._changing[container_id] -= 1
        if self._changing[container_id] <= 0:
            del self._changing[container_id]
        self.mark(container_id)

    @property
    def marks(self) -> int:
        """Where a reading begins: marks after it keep their containers stale."""
        return self._marks

    def stale(self) -> set[str]:
        return {*self._stale, *self._changing}

    def incomplete(self) -> list[str]:
        return [cid for cid, entry in self.entries.items() if not entry.complete]

    def _settle(self, container_id: str, since: int) -> None:
        if self._stale.get(container_id, 0) <= since and container_id not in self._changing:
            self._stale.pop(container_id, None)

    def _destroyed_since(self, container_id: str, since: int) -> bool:
        return self._destroyed.get(container_id, 0) > since

    def _changed_since(self, container_id: str, since: int) -> bool:
        return self._stale.get(container_id, 0) > since or container_id in self._changing

    # --- what the node says -----------------------------------------------------
    def fill(self, listing: Iterable[Mapping[str, Any]], since: int) -> None:
        """The whole list, read after the event stream was opened. The times known before
        are dropped: events may have been missed while the stream was down."""
        self.entries = {
            str(s["Id"]): listed(s, self._created_only(self.entries.get(str(s["Id"]))))
            for s in listing
            if not self._destroyed_since(str(s["Id"]), since)
        }
        for container_id in list(self._stale):
            self._settle(container_id, since)
        self.relist = False
        self.live = True

    @staticmethod
    def _created_only(before: Listed | None) -> Listed | None:
        if before is None or before.created is None:
            return None
        before.started = before.finished = None
        return before

    def update(
        self, summaries: Iterable[Mapping[str, Any]], asked: Iterable[str] | None, since: int
    ) -> None:
        """Summaries of the containers `asked` for (every container when None): those the
        node did not list are gone. One destroyed after the reading began is not brought
        back; one marked after it stays stale for the next reading."""
        found = {str(s["Id"]): s for s in summaries}
        if asked is None:
            asked = {*found, *self.entries}
            self.relist = False
        for container_id in asked:
            summary = found.get(container_id)
            if summary is None:
                self.entries.pop(container_id, None)
            elif not self._destroyed_since(container_id, since):
                self.entries[container_id] = listed(summary, self.entries.get(container_id))
            self._settle(container_id, since)
        # Readings take turns: none begun before this one's start is still under way.
        self._destroyed = {c: mark for c, mark in self._destroyed.items() if mark > since}

    def learn(self, container_id: str, inspected: Mapping[str, Any], since: int) -> None:
        """An inspect's exact creation time, and its start and finish times unless an event
        came after the inspect was asked for (the event's times are the newer)."""
        entry = self.entries.get(container_id)
        if entry is None:
            return
        created = inspected.get("Created")
        if isinstance(created, str) and created:
            entry.created = parse_nanoseconds(created)
        if self._changed_since(container_id, since):
            return
        state = inspected.get("State") or {}
        entry.started = _moment(state.get("StartedAt"))
        entry.finished = _moment(state.get("FinishedAt"))

    # --- events -----------------------------------------------------------------
    def started(self, container_id: str, at: float) -> None:
        self.mark(container_id)
        if container_id in self.entries:
            self.entries[container_id].started = at

    def finished(self, container_id: str, at: float) -> None:
        self.mark(container_id)
        if container_id in self.entries:
            self.entries[container_id].finished = at

    def destroyed(self, container_id: str) -> None:
        self.mark(container_id)
        self._destroyed[container_id] = self.marks
        self.entries.pop(container_id, None)

    def lost(self) -> None:
        """The event stream broke: not trusted until filled again."""
        self.live = False
