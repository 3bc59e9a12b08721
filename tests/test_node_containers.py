"""A node's kept container list (node_containers) and the status text rendered from it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swarmproxy.cluster.node_containers import NodeContainers, listed
from swarmproxy.cluster.status_text import human_duration, parse_status

MINUTE, HOUR, DAY = 60, 3600, 86400
WEEK, MONTH, YEAR = 7 * DAY, 30 * DAY, 365 * DAY


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.45, "Less than a second"),
        (1, "1 second"),
        (1.9, "1 second"),
        (47, "47 seconds"),
        (59.9, "59 seconds"),
        (60, "About a minute"),
        (3 * MINUTE, "3 minutes"),
        (35 * MINUTE + 40, "35 minutes"),
        (59 * MINUTE, "59 minutes"),
        (HOUR, "About an hour"),
        (HOUR + 29 * MINUTE, "About an hour"),
        (HOUR + 31 * MINUTE, "2 hours"),
        (HOUR + 30 * MINUTE, "2 hours"),  # Go rounds halves away from zero
        (2 * HOUR + 30 * MINUTE, "3 hours"),
        (3 * HOUR + 59 * MINUTE, "4 hours"),
        (DAY, "24 hours"),
        (DAY + 12 * HOUR, "36 hours"),
        (2 * DAY, "2 days"),
        (13 * DAY + 5 * HOUR, "13 days"),
        (2 * WEEK, "2 weeks"),
        (4 * WEEK + 3 * DAY, "4 weeks"),
        (MONTH, "4 weeks"),
        (MONTH + 2 * WEEK, "6 weeks"),
        (2 * MONTH, "2 months"),
        (5 * MONTH + 2 * WEEK, "5 months"),
        (24 * MONTH, "24 months"),
        (24 * MONTH + 2 * WEEK, "2 years"),
        (3 * YEAR + 2 * MONTH, "3 years"),
    ],
)
def test_human_duration_words_it_as_the_daemon(seconds: float, words: str) -> None:
    assert human_duration(seconds) == words


@pytest.mark.parametrize(
    ("status", "started", "finished", "now", "rendered"),
    [
        ("Up 2 seconds", 100.0, None, 400.0, "Up 5 minutes"),
        ("Up 2 seconds (healthy)", 100.0, None, 105.0, "Up 5 seconds (healthy)"),
        ("Up 1 second (health: starting)", 100.0, None, 101.5, "Up 1 second (health: starting)"),
        ("Up 3 minutes (Paused)", 0.0, None, 2 * HOUR, "Up 2 hours (Paused)"),
        ("Exited (137) 1 second ago", 10.0, 100.0, 160.0, "Exited (137) About a minute ago"),
        ("Exited (-1) 1 second ago", 10.0, 100.0, 103.0, "Exited (-1) 3 seconds ago"),
        ("Restarting (1) 1 second ago", 10.0, 100.0, 130.0, "Restarting (1) 30 seconds ago"),
        ("Created", None, None, 500.0, "Created"),
        ("Dead", None, None, 500.0, "Dead"),
        ("Removal In Progress", None, None, 500.0, "Removal In Progress"),
        ("", None, None, 500.0, ""),
    ],
)
def test_status_is_rendered_from_its_times(
    status: str, started: float | None, finished: float | None, now: float, rendered: str
) -> None:
    assert parse_status(status).render(started, finished, now) == rendered


def test_status_without_its_time_is_not_rendered() -> None:
    assert parse_status("Up 2 seconds").render(None, 5.0, 10.0) is None
    assert parse_status("Exited (0) 2 seconds ago").render(5.0, None, 10.0) is None


def summary(
    container_id: str, state: str = "running", status: str = "Up 1 second"
) -> dict[str, Any]:
    return {
        "Id": container_id,
        "Names": [f"/{container_id}"],
        "Created": 1_700_000_000,
        "State": state,
        "Status": status,
        "Labels": {"quote": 'a "b" \x00 c'},
    }


def inspected(
    started: str = "2023-11-14T22:13:21.5Z", finished: str = "0001-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "Created": "2023-11-14T22:13:20.123456789Z",
        "State": {"StartedAt": started, "FinishedAt": finished},
    }


def test_an_entry_is_the_summary_with_its_status_rendered_again() -> None:
    entry = listed(summary("a"))
    entry.created, entry.started = 1, 1_700_000_001.5
    rendered = entry.head + json.dumps(entry.render(1_700_000_031.6)).encode() + entry.tail + b"}"
    assert json.loads(rendered) == {**summary("a"), "Status": "Up 30 seconds"}


def test_reading_clears_only_what_was_marked_before_it_began() -> None:
    kept = NodeContainers()
    kept.fill([summary("a"), summary("b")], kept.marks)
    kept.mark("a")
    kept.mark("b")
    since = kept.marks
    kept.mark("b")  # while the reading is under way
    kept.update(
        [summary("a", "exited", "Exited (0) 1 second ago"), summary("b")], ["a", "b"], since
    )
    assert kept.stale() == {"b"}
    assert kept.entries["a"].state == "exited"


def test_a_change_under_way_keeps_its_container_stale() -> None:
    kept = NodeContainers()
    kept.fill([summary("a")], kept.marks)
    kept.begin_change("a")
    kept.update([summary("a")], ["a"], kept.marks)
    assert kept.stale() == {"a"}
    kept.end_change("a")
    assert kept.stale() == {"a"}
    kept.update([summary("a")], ["a"], kept.marks)
    assert kept.stale() == set()


def test_a_container_destroyed_during_a_reading_is_not_brought_back() -> None:
    kept = NodeContainers()
    kept.fill([], kept.marks)
    kept.mark("a")
    since = kept.marks
    kept.destroyed("a")
    kept.update([summary("a")], ["a"], since)
    assert "a" not in kept.entries


def test_a_container_new_to_the_list_is_kept_though_its_events_came_meanwhile() -> None:
    kept = NodeContainers()
    kept.fill([], kept.marks)
    kept.mark("a")
    since = kept.marks
    kept.started("a", 5.0)  # the start event, while the reading is under way
    kept.update([summary("a")], ["a"], since)
    assert "a" in kept.entries and kept.stale() == {"a"}


def test_a_container_the_node_no_longer_lists_is_gone() -> None:
    kept = NodeContainers()
    kept.fill([summary("a"), summary("b")], kept.marks)
    kept.update([summary("b")], None, kept.marks)
    assert set(kept.entries) == {"b"}
    kept.mark("b")
    kept.update([], ["b"], kept.marks)
    assert kept.entries == {}


def test_times_come_from_an_inspect_unless_an_event_came_after_it_was_asked() -> None:
    kept = NodeContainers()
    kept.fill([summary("a"), summary("b")], kept.marks)
    assert set(kept.incomplete()) == {"a", "b"}
    since = kept.marks
    kept.started("b", 1_800_000_000.0)
    kept.learn("a", inspected(), since)
    kept.learn("b", inspected(), since)
    assert kept.entries["a"].complete and kept.entries["a"].started == 1_700_000_001.5
    assert kept.entries["a"].finished == 0.0
    assert kept.entries["a"].created == 1_700_000_000_123_456_789
    # The inspect was asked before the start event: the event's time stands.
    assert kept.entries["b"].started == 1_800_000_000.0
    assert kept.incomplete() == []


def test_the_list_read_again_forgets_times_that_events_may_have_changed() -> None:
    kept = NodeContainers()
    kept.fill([summary("a")], kept.marks)
    kept.learn("a", inspected(), kept.marks)
    kept.lost()
    assert not kept.live
    kept.fill([summary("a")], kept.marks)
    assert kept.live
    assert kept.entries["a"].created is not None and kept.entries["a"].started is None
    assert kept.incomplete() == ["a"]
