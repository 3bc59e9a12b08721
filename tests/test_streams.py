"""swarmproxy.cluster.streams: reading a node's stream in lines and chunks, and one upload
fed to several readers at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from swarmproxy.cluster.node import Node
from swarmproxy.cluster.streams import Inactive, Tee, chunks, lines
from swarmproxy.errors import NodeUnavailable
from swarmproxy.node_client import BodyFailed


async def source(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(stream: AsyncIterable[bytes]) -> list[bytes]:
    return [item async for item in stream]


# --- lines -----------------------------------------------------------------------------------


async def test_lines_split_across_chunks_keep_their_newlines() -> None:
    """Lines are reassembled across chunk borders, each with its newline."""
    parts = [b"one\ntw", b"o\n", b"", b"thr", b"ee\nfour\n"]
    assert await collect(lines(source(parts))) == [b"one\n", b"two\n", b"three\n", b"four\n"]


async def test_lines_yield_a_last_line_without_newline() -> None:
    """A last line with no newline is still yielded, as it is."""
    assert await collect(lines(source([b"a\nb", b"c"]))) == [b"a\n", b"bc"]


async def test_lines_of_an_empty_stream() -> None:
    """No input, no line; empty lines are kept."""
    assert await collect(lines(source([]))) == []
    assert await collect(lines(source([b"\n\n"]))) == [b"\n", b"\n"]


async def test_lines_have_no_length_limit() -> None:
    """A line far longer than any stream reader's limit (here 4 MiB) comes out whole."""
    long = b"x" * (4 * 1024 * 1024)
    parts = [long[i : i + 65536] for i in range(0, len(long), 65536)] + [b"\nend"]
    assert await collect(lines(source(parts))) == [long + b"\n", b"end"]


# --- chunks ----------------------------------------------------------------------------------


class FakeContent:
    """A response body: scripted reads, each a bytes, an exception, or a pause in seconds."""

    def __init__(self, script: list[bytes | BaseException | float]) -> None:
        self.script = script

    async def read(self, n: int = -1) -> bytes:
        while self.script:
            step = self.script.pop(0)
            if isinstance(step, float):
                await asyncio.sleep(step)
            elif isinstance(step, BaseException):
                raise step
            else:
                return step
        return b""


class FakeResponse:
    """What `chunks` reads of an aiohttp response: its body, and the request it answers."""

    method = "POST"
    url = URL("http://127.0.0.1:1/v1.41/images/load?quiet=1")

    def __init__(self, script: list[bytes | BaseException | float]) -> None:
        self.content = FakeContent(script)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    made = Node("node-1", "tcp://127.0.0.1:1")
    try:
        yield made
    finally:
        await made.client.close()


def response(*script: bytes | BaseException | float) -> Any:
    return FakeResponse(list(script))


async def test_chunks_pass_the_body_on_until_its_end(node: Node) -> None:
    """Every chunk read is yielded, until the empty read that ends the body."""
    got = await collect(chunks(node, response(b"ab", 0.01, b"cd"), inactivity=0.3))
    assert got == [b"ab", b"cd"]


async def test_chunks_raise_inactive_when_the_node_falls_silent(node: Node) -> None:
    """A node silent for longer than `inactivity` makes the stream raise Inactive."""
    got: list[bytes] = []
    with pytest.raises(Inactive, match=r"no progress for 0.3s"):
        async for chunk in chunks(node, response(b"ab", 5.0, b"never"), inactivity=0.3):
            got.append(chunk)
    assert got == [b"ab"]


async def test_chunks_wait_without_bound_when_no_inactivity_is_given(node: Node) -> None:
    """With no `inactivity`, a pause is only a pause."""
    assert await collect(chunks(node, response(0.05, b"late"))) == [b"late"]


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientPayloadError("Response payload is not completed"),
        aiohttp.ServerDisconnectedError(),
        ConnectionResetError("reset by peer"),
    ],
)
async def test_chunks_turn_transport_errors_into_node_unavailable(
    node: Node, error: BaseException
) -> None:
    """A transport failure mid-body is the node's: NodeUnavailable naming it, counted on its
    health."""
    with pytest.raises(NodeUnavailable) as caught:
        await collect(chunks(node, response(b"ab", error), inactivity=0.3))
    assert caught.value.node_name == "node-1"
    assert "node node-1 (tcp://127.0.0.1:1) is unavailable" in caught.value.message
    assert caught.value.message.endswith("(in POST /v1.41/images/load)")
    assert caught.value.__cause__ is error
    assert node.health.failures == 1
    assert node.health.last_error


# --- Tee ------------------------------------------------------------------------------------


async def slow_reader(stream: AsyncIterable[bytes], pause: float) -> list[bytes]:
    got = []
    async for chunk in stream:
        got.append(chunk)
        await asyncio.sleep(pause)
    return got


async def test_tee_gives_every_reader_the_whole_upload() -> None:
    """Each reader gets every chunk, in order, then a clean end."""
    parts = [bytes([i]) * 10 for i in range(20)]
    tee = Tee(source(parts), readers=3, depth=2)
    pump = asyncio.create_task(tee.pump())
    got = await asyncio.gather(*(collect(tee.reader(i)) for i in range(3)))
    await pump
    assert got == [parts, parts, parts]


async def test_tee_holds_at_most_depth_plus_one_chunks_per_reader() -> None:
    """The slowest reader sets the pace: with many chunks and slow readers, no reader is ever
    more than `depth` + 1 chunks behind what was taken from the source."""
    depth, count = 3, 60
    pulled = 0
    received = [0, 0, 0]
    worst = 0

    def check() -> None:
        nonlocal worst
        worst = max(worst, *(pulled - r for r in received))
        assert all(q.qsize() <= depth for q in tee._queues)

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        for i in range(count):
            pulled += 1
            check()
            yield i.to_bytes(2, "big")

    tee = Tee(counted(), readers=3, depth=depth)

    async def reader(index: int, pause: float) -> list[bytes]:
        got = []
        async for chunk in tee.reader(index):
            received[index] += 1
            got.append(chunk)
            check()
            await asyncio.sleep(pause)
        return got

    pump = asyncio.create_task(tee.pump())
    got = await asyncio.gather(reader(0, 0), reader(1, 0.002), reader(2, 0.004))
    await pump
    expected = [i.to_bytes(2, "big") for i in range(count)]
    assert list(got) == [expected] * 3
    assert worst <= depth + 1
    # It is the bound that held the pump back, not a lucky schedule.
    assert worst == depth + 1


async def test_tee_drop_of_a_stuck_reader_frees_the_others() -> None:
    """A reader that stops reading (its node failed) and is dropped blocks neither the pump
    nor the other readers, even when the pump was already waiting on its full queue."""
    parts = [b"%d" % i for i in range(50)]
    tee = Tee(source(parts), readers=3, depth=2)
    pump = asyncio.create_task(tee.pump())
    stuck = tee.reader(1)
    assert await anext(stuck) == b"0"  # then it reads no more
    readers = [asyncio.create_task(collect(tee.reader(i))) for i in (0, 2)]
    await asyncio.sleep(0.05)
    # The pump waits on the stuck reader's full queue; the others wait on the pump.
    assert not pump.done()
    assert not any(r.done() for r in readers)
    tee.drop(1)
    async with asyncio.timeout(2):
        got = await asyncio.gather(*readers)
        await pump
    assert got == [parts, parts]


async def test_tee_drop_before_reading_anything() -> None:
    """A reader dropped before it read a byte (its node refused the connection) never holds
    the upload back."""
    parts = [b"x" * 100] * 30
    tee = Tee(source(parts), readers=2, depth=1)
    tee.drop(0)
    pump = asyncio.create_task(tee.pump())
    async with asyncio.timeout(2):
        got = await collect(tee.reader(1))
        await pump
    assert got == parts


async def test_tee_stops_pumping_when_every_reader_is_dropped() -> None:
    """With no reader left the pump ends without reading the rest of the source."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x"

    tee = Tee(endless(), readers=2, depth=2)
    pump = asyncio.create_task(tee.pump())
    await asyncio.sleep(0.01)
    tee.drop(0)
    tee.drop(1)
    async with asyncio.timeout(2):
        await pump
    assert pulled <= 2 * (2 + 1)


async def test_tee_source_failure_makes_every_live_reader_raise() -> None:
    """A source that breaks cuts every live reader's upload with an error, never a clean
    (short) end; the pump itself raises the source's error."""

    async def broken() -> AsyncIterator[bytes]:
        yield b"first"
        yield b"second"
        raise OSError("client went away")

    tee = Tee(broken(), readers=3, depth=4)
    tee.drop(2)  # a reader already gone is left alone
    pump = asyncio.create_task(tee.pump())
    outcomes = await asyncio.gather(
        collect(tee.reader(0)), slow_reader(tee.reader(1), 0.01), return_exceptions=True
    )
    for outcome in outcomes:
        assert isinstance(outcome, BodyFailed)
        assert "cut short" in str(outcome)
    with pytest.raises(OSError, match="client went away"):
        await pump


async def test_tee_source_failure_reaches_a_reader_with_a_full_queue() -> None:
    """A reader that was slow to read (full queue) still sees the failure, not a hang."""
    release = asyncio.Event()

    async def broken() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        await release.wait()
        raise OSError("boom")

    tee = Tee(broken(), readers=2, depth=2)
    pump = asyncio.create_task(tee.pump())
    fast = asyncio.create_task(collect(tee.reader(0)))
    await asyncio.sleep(0.01)
    release.set()
    with pytest.raises(OSError):
        await pump
    with pytest.raises(BodyFailed):
        await fast
    with pytest.raises(BodyFailed):
        async with asyncio.timeout(2):
            await collect(tee.reader(1))


async def test_tee_pump_cancelled_cuts_the_readers() -> None:
    """A pump cancelled mid-upload (the request went away) leaves no reader hanging."""

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x"
            await asyncio.sleep(0.001)

    tee = Tee(endless(), readers=2, depth=2)
    pump = asyncio.create_task(tee.pump())
    readers = [asyncio.create_task(collect(tee.reader(i))) for i in range(2)]
    await asyncio.sleep(0.02)
    pump.cancel()
    async with asyncio.timeout(2):
        outcomes = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(o, BodyFailed) for o in outcomes)
