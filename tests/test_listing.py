"""swarmproxy.cluster.listing: merging per-node container lists as one daemon would list them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from swarmproxy.cluster.listing import merge_containers
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.timestamps import parse_nanoseconds

Container = dict[str, Any]


@pytest.fixture
async def make_node() -> AsyncIterator[Callable[..., Node]]:
    """Builds Nodes inside the test's event loop and closes their sessions afterwards."""
    made: list[Node] = []

    def make(name: str, address: str | None = None, **kwargs: Any) -> Node:
        node = Node(name, address or f"tcp://{name}.example:2375", **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.client.close()


def containers(*specs: tuple[str, int]) -> list[Container]:
    """A node's list, as given (the node's own newest-first order): (Id, Created second)."""
    return [{"Id": cid, "Created": created, "Names": [f"/{cid}"]} for cid, created in specs]


def ids(merged: list[Container]) -> list[str]:
    return [c["Id"] for c in merged]


def stamp(second: int, fraction: str = "") -> str:
    """RFC 3339 for `second` seconds after 2024-01-01T00:00:00Z (1704067200)."""
    base = 1_704_067_200
    assert second >= base
    offset = second - base
    hh, rest = divmod(offset, 3600)
    mm, ss = divmod(rest, 60)
    return f"2024-01-01T{hh:02d}:{mm:02d}:{ss:02d}{'.' + fraction if fraction else ''}Z"


T = 1_704_067_200  # 2024-01-01T00:00:00Z


class FakePrecise:
    """A precise_created that answers from a table and records what it was asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[tuple[Node, str]] = []

    async def __call__(self, node: Node, container_id: str) -> str:
        self.calls.append((node, container_id))
        return self.answers.get(container_id, "")

    def asked(self) -> set[str]:
        return {cid for _, cid in self.calls}


def assert_node_orders_kept(
    merged: list[Container], per_node: list[tuple[Node, list[Container]]]
) -> None:
    """What each node returned is a prefix of that node's own list, in its order."""
    for node, listed in per_node:
        mine = [c["Id"] for c in merged if c["Node"]["Addr"] == node.address]
        assert mine == [c["Id"] for c in listed][: len(mine)], node.name


# --- ordering and limit --------------------------------------------------------------------


async def test_newest_first_across_nodes(make_node: Callable[..., Node]) -> None:
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    per_node = [
        (a, containers(("a1", T + 30), ("a2", T + 20), ("a3", T + 10))),
        (b, containers(("b1", T + 25), ("b2", T + 15))),
        (c, containers(("c1", T + 40), ("c2", T + 5))),
    ]
    precise = FakePrecise({})
    merged = await merge_containers(per_node, None, precise)
    assert ids(merged) == ["c1", "a1", "b1", "a2", "b2", "a3", "c2"]
    assert precise.calls == []


async def test_empty_lists(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    precise = FakePrecise({})
    assert await merge_containers([], None, precise) == []
    assert await merge_containers([(a, []), (b, [])], 3, precise) == []
    merged = await merge_containers([(a, []), (b, containers(("b1", T)))], 1, precise)
    assert ids(merged) == ["b1"]
    assert precise.calls == []


async def test_each_nodes_order_is_kept_within_one_second(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [
        (a, containers(("a1", T + 10), ("a2", T + 10), ("a3", T + 10), ("a4", T + 9))),
        (b, containers(("b1", T + 11), ("b2", T + 10), ("b3", T + 10))),
    ]
    precise = FakePrecise({})
    merged = await merge_containers(per_node, None, precise)
    got = ids(merged)
    assert got[0] == "b1"
    assert got[-1] == "a4"
    assert sorted(got[1:-1]) == ["a1", "a2", "a3", "b2", "b3"]
    assert [i for i in got if i.startswith("a")] == ["a1", "a2", "a3", "a4"]
    assert [i for i in got if i.startswith("b")] == ["b1", "b2", "b3"]
    # Without a limit nothing is cut, so no node is asked for exact times.
    assert precise.calls == []


async def test_a_single_nodes_order_is_kept_even_against_its_seconds(
    make_node: Callable[..., Node],
) -> None:
    # A node's list is sorted by the node with full precision; same-second entries keep it.
    a = make_node("a")
    listed = containers(*((f"a{i}", T + 3) for i in range(10)))
    merged = await merge_containers([(a, listed)], None, FakePrecise({}))
    assert ids(merged) == [f"a{i}" for i in range(10)]


async def test_limit_applies_after_merging(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    # Each node already applied limit=3 itself.
    per_node = [
        (a, containers(("a1", T + 30), ("a2", T + 20), ("a3", T + 10))),
        (b, containers(("b1", T + 35), ("b2", T + 25), ("b3", T + 5))),
    ]
    precise = FakePrecise({})
    merged = await merge_containers(per_node, 3, precise)
    assert ids(merged) == ["b1", "a1", "b2"]
    assert precise.calls == []


@pytest.mark.parametrize("limit", [None, 0, -1])
async def test_no_limit_keeps_everything_and_asks_nothing(
    make_node: Callable[..., Node], limit: int | None
) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [
        (a, containers(("a1", T + 30), ("a2", T + 10), ("a3", T + 10))),
        (b, containers(("b1", T + 10), ("b2", T + 10))),
    ]
    precise = FakePrecise({})
    merged = await merge_containers(per_node, limit, precise)
    assert len(merged) == 5
    assert ids(merged)[0] == "a1"
    assert_node_orders_kept(merged, per_node)
    assert precise.calls == []


@pytest.mark.parametrize("limit", [5, 6, 100])
async def test_a_limit_beyond_the_total_keeps_everything_in_exact_order(
    make_node: Callable[..., Node], limit: int
) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [
        (a, containers(("a1", T + 30), ("a2", T + 10), ("a3", T + 10))),
        (b, containers(("b1", T + 10), ("b2", T + 10))),
    ]
    times = {"a2": "8", "a3": "4", "b1": "6", "b2": "2"}
    precise = FakePrecise({k: stamp(T + 10, v) for k, v in times.items()})
    merged = await merge_containers(per_node, limit, precise)
    assert ids(merged) == ["a1", "a2", "b1", "a3", "b2"]
    assert precise.asked() == {"a2", "a3", "b1", "b2"}


async def test_limit_one(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [(a, containers(("a1", T + 1))), (b, containers(("b1", T + 2)))]
    assert ids(await merge_containers(per_node, 1, FakePrecise({}))) == ["b1"]


async def test_every_entry_names_its_node(make_node: Callable[..., Node]) -> None:
    a = make_node("node-a", "tcp://10.0.0.1:2375", labels={"zone": "a"})
    b = make_node("node-b", "unix:///run/b/docker.sock")
    b.info = {"NCPU": 8, "MemTotal": 16 << 30}
    per_node = [
        (a, containers(("a1", T + 2), ("a2", T + 1))),
        (b, containers(("b1", T + 3))),
    ]
    merged = await merge_containers(per_node, None, FakePrecise({}))
    by_id = {c["Id"]: c for c in merged}
    for cid in ("a1", "a2"):
        assert by_id[cid]["Node"] == {
            "Name": "node-a",
            "Addr": "tcp://10.0.0.1:2375",
            "Labels": {"zone": "a"},
            "Cpus": 0,
            "Memory": 0,
        }
    assert by_id["b1"]["Node"] == {
        "Name": "node-b",
        "Addr": "unix:///run/b/docker.sock",
        "Labels": {},
        "Cpus": 8,
        "Memory": 16 << 30,
    }
    assert by_id["b1"]["Node"] == b.describe()
    # The rest of each entry is the node's own.
    assert by_id["a1"]["Names"] == ["/a1"]
    assert by_id["a1"]["Created"] == T + 2


async def test_kept_entries_name_their_node_after_a_cut(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [(a, containers(("a1", T + 9), ("a2", T + 1))), (b, containers(("b1", T + 5)))]
    merged = await merge_containers(per_node, 2, FakePrecise({}))
    assert ids(merged) == ["a1", "b1"]
    assert all("Node" in c for c in merged)


# --- a cut inside one second shared by several nodes ---------------------------------------


async def test_cut_inside_a_shared_second_keeps_the_truly_newest(
    make_node: Callable[..., Node],
) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [
        (a, containers(("a1", T + 10), ("a2", T + 10), ("a3", T + 9))),
        (b, containers(("b1", T + 10), ("b2", T + 10), ("b3", T + 8))),
    ]
    precise = FakePrecise(
        {
            "a1": stamp(T + 10, "700000000"),
            "a2": stamp(T + 10, "200000000"),
            "b1": stamp(T + 10, "900000000"),
            "b2": stamp(T + 10, "800000000"),
        }
    )
    merged = await merge_containers(per_node, 3, precise)
    assert ids(merged) == ["b1", "b2", "a1"]
    # Only the containers of the shared second were asked about, each on its own node.
    assert sorted(precise.calls, key=lambda call: call[1]) == [
        (a, "a1"),
        (a, "a2"),
        (b, "b1"),
        (b, "b2"),
    ]
    assert merged[0]["Node"]["Name"] == "b"
    assert merged[2]["Node"]["Name"] == "a"


async def test_cut_inside_a_shared_second_with_newer_seconds_above(
    make_node: Callable[..., Node],
) -> None:
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    per_node = [
        (a, containers(("a1", T + 20), ("a2", T + 10))),
        (b, containers(("b1", T + 10), ("b2", T + 5))),
        (c, containers(("c1", T + 15), ("c2", T + 10))),
    ]
    precise = FakePrecise(
        {
            "a2": stamp(T + 10, "1"),
            "b1": stamp(T + 10, "000000002"),
            "c2": stamp(T + 10, "000000003"),
        }
    )
    merged = await merge_containers(per_node, 3, precise)
    # a2 is 0.1s into the second; b1 and c2 are a few nanoseconds into it.
    assert ids(merged) == ["a1", "c1", "a2"]
    assert precise.asked() == {"a2", "b1", "c2"}

    precise = FakePrecise(
        {
            "a2": stamp(T + 10, "000000001"),
            "b1": stamp(T + 10, "000000002"),
            "c2": stamp(T + 10, "000000003"),
        }
    )
    merged = await merge_containers(per_node, 4, precise)
    assert ids(merged) == ["a1", "c1", "c2", "b1"]


async def test_precise_times_differing_by_one_nanosecond(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [(a, containers(("a1", T + 10))), (b, containers(("b1", T + 10)))]
    precise = FakePrecise({"a1": stamp(T + 10, "123456788"), "b1": stamp(T + 10, "123456789")})
    assert ids(await merge_containers(per_node, 1, precise)) == ["b1"]
    precise.answers = {"a1": stamp(T + 10, "123456789"), "b1": stamp(T + 10, "123456788")}
    assert ids(await merge_containers(per_node, 1, precise)) == ["a1"]


async def test_precise_times_without_fraction(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [(a, containers(("a1", T + 10))), (b, containers(("b1", T + 10)))]
    precise = FakePrecise({"a1": stamp(T + 10), "b1": stamp(T + 10, "5")})
    assert ids(await merge_containers(per_node, 1, precise)) == ["b1"]


async def test_kept_shared_second_is_ordered_exactly(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    # The second T+10 is shared and kept whole: only exact times give the daemon's order.
    per_node = [
        (a, containers(("a1", T + 10), ("a2", T + 9))),
        (b, containers(("b1", T + 10), ("b2", T + 8))),
    ]
    precise = FakePrecise({"a1": stamp(T + 10, "3"), "b1": stamp(T + 10, "7")})
    merged = await merge_containers(per_node, 2, precise)
    assert ids(merged) == ["b1", "a1"]
    assert precise.asked() == {"a1", "b1"}

    # The cut falls between two seconds that only one node each holds: nothing more asked.
    merged = await merge_containers(per_node, 3, precise)
    assert ids(merged) == ["b1", "a1", "a2"]
    assert precise.asked() == {"a1", "b1"}


async def test_cut_inside_a_second_of_one_node_asks_nothing(make_node: Callable[..., Node]) -> None:
    a, b = make_node("a"), make_node("b")
    # The cut is inside T+10, but only node a has containers in it: a's order decides.
    per_node = [
        (a, containers(("a1", T + 10), ("a2", T + 10), ("a3", T + 10))),
        (b, containers(("b1", T + 11), ("b2", T + 9))),
    ]
    precise = FakePrecise({})
    merged = await merge_containers(per_node, 3, precise)
    assert ids(merged) == ["b1", "a1", "a2"]
    assert precise.calls == []


async def test_precise_created_returning_nothing_falls_back_to_seconds(
    make_node: Callable[..., Node],
) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [
        (a, containers(("a1", T + 11), ("a2", T + 10), ("a3", T + 10))),
        (b, containers(("b1", T + 10), ("b2", T + 10))),
    ]
    precise = FakePrecise({})  # every answer is ""
    merged = await merge_containers(per_node, 3, precise)
    assert precise.asked() == {"a2", "a3", "b1", "b2"}
    assert len(merged) == 3
    assert ids(merged)[0] == "a1"
    assert all(c["Created"] == T + 10 for c in merged[1:])
    assert_node_orders_kept(merged, per_node)
    assert all("Node" in c for c in merged)


async def test_partial_precise_answers_keep_each_nodes_order(
    make_node: Callable[..., Node],
) -> None:
    a, b = make_node("a"), make_node("b")
    per_node = [
        (a, containers(("a1", T + 10), ("a2", T + 10))),
        (b, containers(("b1", T + 10), ("b2", T + 9))),
    ]
    # a1 was removed between the list and the inspect: its node cannot say any more.
    precise = FakePrecise({"a2": stamp(T + 10, "5"), "b1": stamp(T + 10, "2")})
    merged = await merge_containers(per_node, 2, precise)
    # Node a listed a1 before a2, so a1 is at least as new as a2 (10.5s) > b1 (10.2s).
    assert_node_orders_kept(merged, per_node)
    assert ids(merged) == ["a1", "a2"]


# --- parse_nanoseconds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "ns"),
    [
        ("2024-01-01T00:00:00Z", 1_704_067_200_000_000_000),
        ("2024-01-01T00:00:00.1Z", 1_704_067_200_100_000_000),
        ("2024-01-01T00:00:00.12Z", 1_704_067_200_120_000_000),
        ("2024-01-01T00:00:00.123Z", 1_704_067_200_123_000_000),
        ("2024-01-01T00:00:00.1234Z", 1_704_067_200_123_400_000),
        ("2024-01-01T00:00:00.12345Z", 1_704_067_200_123_450_000),
        ("2024-01-01T00:00:00.123456Z", 1_704_067_200_123_456_000),
        ("2024-01-01T00:00:00.1234567Z", 1_704_067_200_123_456_700),
        ("2024-01-01T00:00:00.12345678Z", 1_704_067_200_123_456_780),
        ("2024-01-01T00:00:00.123456789Z", 1_704_067_200_123_456_789),
        ("2024-01-01T00:00:00.000000001Z", 1_704_067_200_000_000_001),
        ("2024-01-01T00:00:00.999999999Z", 1_704_067_200_999_999_999),
        ("2024-01-01T00:00:00.05Z", 1_704_067_200_050_000_000),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("2038-01-19T03:14:08.000000001Z", 2_147_483_648_000_000_001),
        ("2024-02-29T23:59:59.987654321Z", 1_709_251_199_987_654_321),
    ],
)
def testparse_nanoseconds(created: str, ns: int) -> None:
    assert parse_nanoseconds(created) == ns


def test_nanoseconds_is_exact_for_all_digits() -> None:
    # Integer arithmetic: no float rounding of the nine digits.
    for digits in range(10):
        fraction = "987654321"[:digits]
        created = "2024-01-01T00:00:00" + (f".{fraction}" if digits else "") + "Z"
        expected = 1_704_067_200 * 10**9 + int((fraction + "0" * 9)[:9])
        assert parse_nanoseconds(created) == expected


def test_nanoseconds_orders_like_the_seconds_it_refines() -> None:
    assert parse_nanoseconds("2024-01-01T00:00:01.000000000Z") > parse_nanoseconds(
        "2024-01-01T00:00:00.999999999Z"
    )
    assert parse_nanoseconds("2024-01-01T00:00:00Z") // 10**9 == T
