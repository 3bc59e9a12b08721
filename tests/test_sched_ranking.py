"""The weighing strategies' ranking (spread, binpack): kept as loads and capacities change,
it must choose exactly as weighing every candidate does."""

from __future__ import annotations

import copy
import gc
import random
import weakref
from collections.abc import Sequence

import pytest

from swarmproxy.cluster.dry import DryNodeClient, dry_copy
from swarmproxy.cluster.node import Node
from swarmproxy.errors import NoNodeAvailable
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.scheduler.binpack import Binpack
from swarmproxy.scheduler.load import NodeLoad, Reservation
from swarmproxy.scheduler.spread import Spread
from swarmproxy.scheduler.weighing import Weighing, Weight
from swarmproxy.storage import MemoryStorage

GIB = 1 << 30
NOTHING = SchedulingRequest(config={"Image": "busybox"})


def node(i: int) -> Node:
    made = Node(f"n{i}", f"tcp://10.0.{i // 100}.{i % 100}:2375", client_class=DryNodeClient)
    made.info = {"NCPU": 4, "MemTotal": 8 * GIB}
    return made


async def weighed_choice(strategy: Weighing, nodes: Sequence[Node]) -> Node | None:
    """What weighing every candidate chooses: the best score, then the first address."""
    scored = await strategy.scores(nodes, NOTHING)
    return min(scored, key=lambda n: (-scored[n], n.address)) if scored else None


async def ranked_choice(strategy: Weighing, nodes: Sequence[Node]) -> Node | None:
    try:
        return await strategy.select(nodes, NOTHING)
    except NoNodeAvailable:
        return None


def change_at_random(rng: random.Random, nodes: list[Node], serial: int) -> None:
    """One thing that happens to a node's load or capacity, as events and creates do."""
    target = rng.choice(nodes)
    load, container = target.load, f"c{serial}"
    known = sorted((*load.pending, *load.running))
    what = rng.randrange(7)
    if what <= 1 or not known:
        cpus = rng.choice((0.0, 0.0, 0.5, 2.0, 5.0))
        load.created(container, Reservation(cpus, rng.choice((0, 0, GIB))))
    elif what == 2:
        load.started(rng.choice(known))
    elif what == 3:
        load.stopped(rng.choice(known))
    elif what == 4:
        load.removed(rng.choice(known))
    elif what == 5:
        kept = [{"Id": c, "State": "running"} for c in known[: rng.randrange(len(known) + 1)]]
        load.replace(kept, {c["Id"]: load.reserved[c["Id"]] for c in kept if load.knows(c["Id"])})
    else:
        # The health monitor reads /info again: a new dict, maybe another capacity.
        target.info = {"NCPU": rng.choice((1, 4, 8)), "MemTotal": rng.choice((GIB, 8 * GIB))}


@pytest.mark.parametrize("strategy", [Spread, Binpack])
@pytest.mark.parametrize("seed", range(12))
async def test_the_ranking_chooses_as_weighing_every_node(
    strategy: type[Weighing], seed: int
) -> None:
    rng = random.Random(seed)
    nodes = [node(i) for i in range(40)]
    ranked, weighed = strategy(), strategy()
    for serial in range(400):
        change_at_random(rng, nodes, serial)
        # Most decisions are among every node, some among a few (constraints, retries).
        candidates = nodes if rng.random() < 0.7 else rng.sample(nodes, rng.randrange(1, 10))
        assert await ranked_choice(ranked, candidates) is await weighed_choice(weighed, candidates)


async def test_ties_go_to_the_first_address_as_before() -> None:
    nodes = [node(i) for i in (5, 3, 9)]
    assert (await Spread().select(nodes, NOTHING)).name == "n3"
    assert (await Binpack().select(nodes, NOTHING)).name == "n3"


async def test_a_node_with_no_room_even_for_nothing_is_never_chosen() -> None:
    full, free = node(1), node(2)
    full.load.created("big", Reservation(cpus=6))
    assert await Binpack().select([full, free], NOTHING) is free
    with pytest.raises(NoNodeAvailable, match="no node has room for 0 CPUs"):
        await Spread().select([full], NOTHING)


async def test_a_reservation_is_weighed_on_every_candidate() -> None:
    # With 2 CPUs asked for, node n1 (1 CPU) has no room, whatever the ranking says.
    small, large = node(1), node(2)
    small.info = {"NCPU": 1, "MemTotal": 8 * GIB}
    large.load.created("a", Reservation())
    spread = Spread()
    assert await spread.select([small, large], NOTHING) is small
    asking = SchedulingRequest(config={"HostConfig": {"NanoCpus": 2_000_000_000}})
    assert await spread.select([small, large], asking) is large


async def test_a_node_that_leaves_is_not_kept_alive() -> None:
    nodes = [node(i) for i in range(3)]
    spread = Spread()
    assert await spread.select(nodes, NOTHING) is nodes[0]
    gone = weakref.ref(nodes[0])
    del nodes[0]
    # The ranking remembers its last candidates until it is given others.
    assert await spread.select(nodes, NOTHING) is nodes[0]
    gc.collect()
    assert gone() is None
    assert await spread.select(nodes, NOTHING) is nodes[0]


async def test_dry_mode_ranks_its_copies_apart() -> None:
    real = [node(i) for i in range(3)]
    spread = Spread()
    assert await spread.select(real, NOTHING) is real[0]
    dry = await spread.for_dry_mode(MemoryStorage())
    copies = [dry_copy(n) for n in real]
    copies[0].load.created("dry", Reservation())
    assert await dry.select(copies, NOTHING) is copies[1]
    # Neither the copy's load nor the dry strategy touched the real ranking.
    assert await spread.select(real, NOTHING) is real[0]


async def test_a_strategy_that_scores_otherwise_is_followed() -> None:
    class Emptiest(Spread):
        """Scores by free memory alone, as a custom strategy might."""

        async def scores(
            self, nodes: Sequence[Node], request: SchedulingRequest
        ) -> dict[Node, float]:
            return {n: float(n.info["MemTotal"]) for n in nodes}

    small, large = node(1), node(2)
    large.info = {"NCPU": 4, "MemTotal": 64 * GIB}
    large.load.created("a", Reservation())
    assert await Spread().select([small, large], NOTHING) is small
    assert await Emptiest().select([small, large], NOTHING) is large


def test_rate_is_the_score_of_a_weight() -> None:
    weight = Weight(2, 0.5, 0.25)
    assert Spread().rate(weight) == -weight.fullness
    assert Binpack().rate(weight) == weight.fullness


def test_a_copy_of_a_load_is_its_own_and_watched_by_nobody() -> None:
    load, told = NodeLoad(), []
    load.created("a", Reservation(cpus=1))
    load.watch(lambda: told.append("changed"))
    copied = copy.deepcopy(load)
    copied.started("a")
    copied.created("b", Reservation(memory=GIB))
    assert told == []
    assert (load.pending, load.running) == ({"a"}, set())
    assert (copied.pending, copied.running) == ({"b"}, {"a"})
    assert (copied.reserved_cpus, copied.reserved_memory) == (1, GIB)
    load.removed("a")
    assert told == ["changed"] and load.reserved == {}
