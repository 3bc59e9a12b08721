"""The strategies, on Node objects whose load and capacity the tests set (no daemon)."""

from __future__ import annotations

import pytest

from swarmproxy.cluster.dry import DryNodeClient
from swarmproxy.cluster.node import Node
from swarmproxy.errors import NoNodeAvailable
from swarmproxy.scheduler import STRATEGIES, Scheduler, SchedulingRequest, make_scheduler
from swarmproxy.scheduler.binpack import Binpack
from swarmproxy.scheduler.load import Reservation, reservation_of
from swarmproxy.scheduler.random_choice import Random
from swarmproxy.scheduler.round_robin import RoundRobin
from swarmproxy.scheduler.spread import Spread
from swarmproxy.storage import MemoryStorage
from tests.hooks_for_tests import FirstNode

GIB = 1 << 30


def node(name: str, active: int = 0, cpus: int = 4, memory: int = 8 * GIB) -> Node:
    # A client that calls nothing: these nodes are never asked anything.
    made = Node(name, f"tcp://10.0.0.{name[-1]}:2375", client_class=DryNodeClient)
    made.info = {"NCPU": cpus, "MemTotal": memory}
    for i in range(active):
        made.load.created(f"{name}-{i}", Reservation())
    return made


def asking(cpus: float = 0, memory: int = 0) -> SchedulingRequest:
    host = {"NanoCpus": int(cpus * 1e9), "Memory": memory}
    return SchedulingRequest(config={"Image": "busybox", "HostConfig": host})


async def place(strategy: Scheduler, nodes: list[Node], times: int) -> list[str]:
    """Place `times` containers, each counted on its node as the cluster does."""
    placed = []
    for i in range(times):
        chosen = await strategy.select(nodes, asking())
        chosen.load.created(f"new-{i}", Reservation())
        placed.append(chosen.name)
    return placed


async def test_spread_keeps_nodes_within_one_container() -> None:
    nodes = [node("n1", 3), node("n2"), node("n3", 1)]
    await place(Spread(), nodes, 30)
    counts = [n.load.active for n in nodes]
    assert sum(counts) == 34 and max(counts) - min(counts) <= 1


async def test_spread_breaks_ties_by_reserved_share() -> None:
    busy, idle = node("n1"), node("n2")
    busy.load.created("big", Reservation(cpus=3, memory=0))
    idle.load.created("small", Reservation(cpus=0.5, memory=0))
    assert (await Spread().select([busy, idle], asking())).name == "n2"
    scores = await Spread().scores([busy, idle], asking())
    assert scores[idle] > scores[busy]


async def test_binpack_fills_one_node_first() -> None:
    nodes = [node("n1"), node("n2", 2), node("n3")]
    assert set(await place(Binpack(), nodes, 5)) == {"n2"}


async def test_a_node_without_room_is_never_chosen() -> None:
    small, large = node("n1", cpus=1), node("n2", cpus=8)
    for strategy in (Spread(), Binpack()):
        assert (await strategy.select([small, large], asking(cpus=2))).name == "n2"
        assert small not in await strategy.scores([small, large], asking(cpus=2))
    with pytest.raises(NoNodeAvailable) as refused:
        await Binpack().select([small, large], asking(cpus=16))
    assert "no node has room for 16 CPUs" in refused.value.message


async def test_random_uses_every_node() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    assert set(await place(Random(), nodes, 60)) == {"n1", "n2", "n3"}


async def test_round_robin_turns_are_shared_through_storage() -> None:
    storage = MemoryStorage()
    nodes = [node("n1"), node("n2"), node("n3")]
    first, second = RoundRobin(storage), RoundRobin(storage)
    placed = [(await s.select(nodes, asking())).name for s in (first, second, first, second)]
    assert placed == ["n1", "n2", "n3", "n1"]
    # Rating moves nothing: the next node is rated highest, and still comes next.
    scores = await first.scores(nodes, asking())
    assert max(scores, key=lambda n: scores[n]).name == "n2"
    assert (await second.select(nodes, asking())).name == "n2"


async def test_round_robin_follows_the_nodes_given_each_time() -> None:
    n1, n2, n3, n4 = node("n1"), node("n2"), node("n3"), node("n4")
    rotation = RoundRobin(MemoryStorage())
    given = [n3, n1, n2]
    assert (await rotation.select(given, asking())).name == "n1"
    # The same list, changed in place: its new nodes, in address order, take the turns.
    given[1] = n4
    assert (await rotation.select(given, asking())).name == "n3"
    assert (await rotation.select([n2, n1], asking())).name == "n1"


async def test_round_robin_in_dry_mode_goes_on_without_moving_the_real_turn() -> None:
    storage = MemoryStorage()
    nodes = [node("n1"), node("n2"), node("n3")]
    real = RoundRobin(storage)
    await real.select(nodes, asking())
    dry = await real.for_dry_mode(MemoryStorage())
    assert [(await dry.select(nodes, asking())).name for _ in range(2)] == ["n2", "n3"]
    assert (await real.select(nodes, asking())).name == "n2"


def test_strategies_by_name_and_by_import_path() -> None:
    assert sorted(STRATEGIES) == ["binpack", "random", "round-robin", "spread"]
    storage = MemoryStorage()
    made = make_scheduler("spread", storage)
    assert isinstance(made, Spread) and made.storage is storage
    custom = make_scheduler("tests.hooks_for_tests:FirstNode", storage)
    assert isinstance(custom, FirstNode)
    for bad in ("nosuch", "tests.hooks_for_tests:avoid_node_1", "nosuch.module:X"):
        with pytest.raises(ValueError):
            make_scheduler(bad)


def test_reservations_are_read_as_the_daemon_takes_them() -> None:
    assert reservation_of({"HostConfig": {"NanoCpus": 1_500_000_000}}) == Reservation(1.5, 0)
    assert reservation_of({"HostConfig": {"CpuShares": 512, "Memory": 64}}) == Reservation(0.5, 64)
    assert reservation_of({"HostConfig": {"MemoryReservation": 32}}).memory == 32
    assert reservation_of({}) == Reservation()
