"""swarmproxy.cluster.broadcast: one request sent to several nodes, their progress merged.

No real dockerd here: every node is a SIMULATED daemon, a small aiohttp web server on
127.0.0.1 that answers the way a test scripts it, wrapped in a real `Node` (and so talked to
by the real node client).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiohttp import web

from swarmproxy.cluster.broadcast import (
    Broadcast,
    NodeResult,
    encode,
    error_of,
    labelled,
    merged_error,
    parse,
)
from swarmproxy.cluster.node import Node
from swarmproxy.errors import DockerError
from tests.rig.simulated import Handler, dead_node, simulated_nodes

Message = dict[str, Any]

PULL = "/v1.43/images/create?fromImage=alpine&tag=latest"


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop's exception handler would have logged during the test."""
    loop = asyncio.get_running_loop()
    caught: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: caught.append(context))
    try:
        yield caught
    finally:
        gc.collect()
        loop.set_exception_handler(previous)


def line(message: Message) -> bytes:
    """A progress message as the daemon's stream formatter writes it."""
    return json.dumps(message).encode() + b"\r\n"


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    return response


def progress(messages: Iterable[Message], pause: float = 0.0) -> Handler:
    """A simulated daemon streaming `messages` as JSON lines, `pause` seconds apart."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await streamed(request)
        for message in messages:
            await response.write(line(message))
            await asyncio.sleep(pause)
        await response.write_eof()
        return response

    return handler


def answer(status: int, message: str) -> Handler:
    """A simulated daemon answering an error before streaming anything."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": message}, status=status)

    return handler


def silent_before_head() -> Handler:
    """A simulated daemon that takes the request and never answers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return handler


def silent_after_head(first: Message | None = None) -> Handler:
    """A simulated daemon that sends its head (and maybe one message), then nothing."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await streamed(request)
        if first is not None:
            await response.write(line(first))
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return handler


def pulled(tag: str = "latest") -> list[Message]:
    return [
        {"status": "Pulling from library/alpine", "id": tag},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "4abcf2066143"},
        {
            "status": "Downloading",
            "progressDetail": {"current": 100, "total": 3000},
            "progress": "[=>   ]",
            "id": "4abcf2066143",
        },
        {"status": "Pull complete", "progressDetail": {}, "id": "4abcf2066143"},
        {"status": "Digest: sha256:" + "a" * 64},
        {"status": f"Status: Downloaded newer image for alpine:{tag}"},
    ]


async def run(broadcast: Broadcast) -> list[Message]:
    """start(), then the merged stream read to its end, each line checked and decoded."""
    await broadcast.start()
    got = []
    async for chunk in broadcast:
        assert chunk.endswith(b"\r\n")
        assert chunk.count(b"\n") == 1
        got.append(json.loads(chunk))
    return got


def of(messages: list[Message], node: str) -> list[Message]:
    return [m for m in messages if m.get("id", "").split(":")[0] == node]


# --- the pure helpers ------------------------------------------------------------------------


def test_labelled_puts_the_node_in_id() -> None:
    """The node goes first in `id`, before the message's own id, or alone without one."""
    assert labelled("n1", {"status": "Pulling", "id": "abc"}) == {
        "status": "Pulling",
        "id": "n1: abc",
    }
    assert labelled("n1", {"status": "Done"}) == {"status": "Done", "id": "n1"}
    assert labelled("n1", {"status": "Done", "id": ""}) == {"status": "Done", "id": "n1"}


def test_parse_and_encode_progress_lines() -> None:
    """A JSON object is taken as is; anything else is carried as plain output; a message is
    written back as one compact line ending like the daemon's."""
    assert parse(b'{"status": "ok"}\r\n') == {"status": "ok"}
    assert parse(b"not json\n") == {"stream": "not json\n"}
    assert parse(b"[1, 2]\n") == {"stream": "[1, 2]\n"}
    assert encode({"status": "ok", "id": "n1"}) == b'{"status":"ok","id":"n1"}\r\n'


def test_error_of_reads_error_detail_then_error() -> None:
    """A message's error: errorDetail's message first, then `error`; none for progress."""
    assert error_of({"errorDetail": {"message": "denied"}, "error": "other"}) == "denied"
    assert error_of({"error": "denied"}) == "denied"
    assert error_of({"status": "Downloading"}) == ""


async def test_merged_error_names_the_nodes_and_keeps_an_agreed_status() -> None:
    """Nodes with the same error are named together; the status is kept when every node
    agrees on it, else 500, and a node with no status at all makes it 500."""
    nodes = [Node(f"node-{i}", f"tcp://127.0.0.1:{i}") for i in (1, 2, 3)]
    try:
        same = [NodeResult(n, 404, "not found") for n in nodes[:2]]
        error = merged_error(same)
        assert (error.message, error.status) == ("not found (on node-1, node-2)", 404)

        mixed = [
            NodeResult(nodes[0], 404, "not found"),
            NodeResult(nodes[1], 500, "boom"),
            NodeResult(nodes[2], 404, "not found"),
        ]
        error = merged_error(mixed)
        assert error.message == "not found (on node-1, node-3); boom (on node-2)"
        assert error.status == 500

        unreachable = [NodeResult(nodes[0], 0, "down"), NodeResult(nodes[1], 0, "down")]
        assert merged_error(unreachable).status == 502
        mid_stream = [NodeResult(nodes[0], 200, "denied")]
        assert merged_error(mid_stream).status == 500
    finally:
        for node in nodes:
            await node.client.close()


async def test_start_without_nodes_is_an_error() -> None:
    """A broadcast to no node fails at once, 503."""
    with pytest.raises(DockerError) as caught:
        await Broadcast([], "POST", PULL).start()
    assert caught.value.status == 503


# --- simulated nodes: success ----------------------------------------------------------------


async def test_two_nodes_stream_and_both_succeed() -> None:
    """Two SIMULATED nodes stream a pull: every message reaches the merged stream, labelled
    with its node and in the node's own order; both succeed; `learn` hears of each with the
    messages `keep` chose; the request reached each node as sent."""
    seen: list[tuple[str, str, str | None]] = []

    def recording(messages: list[Message]) -> Handler:
        inner = progress(messages, pause=0.01)

        async def handler(request: web.Request) -> web.StreamResponse:
            seen.append((request.method, request.path_qs, request.headers.get("X-Registry-Auth")))
            return await inner(request)

        return handler

    learned: list[NodeResult] = []

    async def learn(result: NodeResult) -> None:
        learned.append(result)

    async with simulated_nodes(recording(pulled()), recording(pulled())) as nodes:
        broadcast = Broadcast(
            nodes,
            "POST",
            PULL,
            headers={"X-Registry-Auth": "e30="},
            inactivity=5,
            keep=lambda m: str(m.get("status", "")).startswith("Digest:"),
            learn=learn,
        )
        got = await run(broadcast)

    assert seen == [("POST", PULL, "e30=")] * 2
    assert len(got) == 2 * len(pulled())
    for name in ("node-1", "node-2"):
        assert of(got, name) == [labelled(name, m) for m in pulled()]
    assert not any("errorDetail" in m for m in got)
    assert broadcast.succeeded == nodes
    assert [r.status for r in broadcast.results] == [200, 200]
    assert sorted(r.node.name for r in learned) == ["node-1", "node-2"]
    for result in learned:
        assert result.kept == [{"status": "Digest: sha256:" + "a" * 64}]


async def test_plain_output_and_long_lines_pass_through() -> None:
    """A line that is not JSON is carried as `stream` output; a very long message (bigger
    than any read chunk) arrives whole."""
    long = {"stream": "x" * (1024 * 1024)}

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await streamed(request)
        await response.write(b"plain text\n")
        await response.write(line(long))
        await response.write(b'{"status":"last, no newline"}')
        await response.write_eof()
        return response

    async with simulated_nodes(handler) as nodes:
        got = await run(Broadcast(nodes, "POST", PULL, inactivity=5))
    # Plain output is labelled as a status line, then said once more, plainly, at the end.
    assert got == [
        {"status": "plain text", "id": "node-1"},
        {"status": long["stream"], "id": "node-1"},
        {"status": "last, no newline", "id": "node-1"},
        {"stream": "plain text\n"},
        long,
    ]


async def test_output_every_node_gave_alike_is_said_once_plainly() -> None:
    """SIMULATED nodes that load one image: each says so, labelled; what all of them said
    (and only that) comes once more without a node, as one daemon would say it."""

    def loading(*said: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = await streamed(request)
            for text in said:
                await response.write(line({"stream": text}))
            await response.write_eof()
            return response

        return handler

    common, own = "Loaded image: x:1\n", "The image x:1 already exists, renaming the old one\n"
    async with simulated_nodes(loading(own, common), loading(common)) as nodes:
        got = await run(Broadcast(nodes, "POST", "/images/load", inactivity=5))
    plain = [m for m in got if "id" not in m]
    assert plain == [{"stream": common}]
    assert {m["id"] for m in got if "id" in m} == {"node-1", "node-2"}


# --- simulated nodes: failures ---------------------------------------------------------------


async def test_one_node_fails_before_streaming_the_other_succeeds() -> None:
    """SIMULATED node-1 answers 500 before streaming while node-2 streams: the 500 is an
    Error line naming node-1, node-2's progress all arrives, and the broadcast succeeds."""
    learned: list[str] = []

    async def learn(result: NodeResult) -> None:
        learned.append(result.node.name)

    async with simulated_nodes(answer(500, "boom"), progress(pulled(), pause=0.01)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=5, learn=learn)
        got = await run(broadcast)

    assert {"status": "Error: boom", "id": "node-1"} in got
    assert of(got, "node-1") == [{"status": "Error: boom", "id": "node-1"}]
    assert of(got, "node-2") == [labelled("node-2", m) for m in pulled()]
    assert not any("errorDetail" in m for m in got)
    assert broadcast.succeeded == [nodes[1]]
    assert (broadcast.results[0].status, broadcast.results[0].error) == (500, "boom")
    assert learned == ["node-2"]


async def test_all_nodes_fail_before_streaming() -> None:
    """Every SIMULATED node answers 500: start() raises the merged error, 500, naming both;
    `learn` hears of none."""
    learned: list[NodeResult] = []

    async def learn(result: NodeResult) -> None:
        learned.append(result)

    async with simulated_nodes(answer(500, "boom"), answer(500, "boom")) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=5, learn=learn)
        with pytest.raises(DockerError) as caught:
            await broadcast.start()
    assert caught.value.status == 500
    assert caught.value.message == "boom (on node-1, node-2)"
    assert learned == []


async def test_all_nodes_agree_on_a_status() -> None:
    """SIMULATED nodes that all answer 404 give a 404, as one daemon would."""
    unknown = answer(404, "manifest unknown")
    async with simulated_nodes(unknown, unknown) as nodes:
        with pytest.raises(DockerError) as caught:
            await Broadcast(nodes, "POST", PULL, inactivity=5).start()
    assert caught.value.status == 404
    assert caught.value.message == "manifest unknown (on node-1, node-2)"


async def test_error_without_json_body_names_the_status() -> None:
    """A SIMULATED node whose error answer is not the daemon's JSON: its status is the error."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="<html>bad gateway</html>")

    async with simulated_nodes(handler) as nodes:
        with pytest.raises(DockerError) as caught:
            await Broadcast(nodes, "POST", PULL, inactivity=5).start()
    assert caught.value.status == 502
    assert caught.value.message == "status 502 (on node-1)"


async def test_error_message_mid_stream_marks_the_node_failed() -> None:
    """A SIMULATED node that streams, then sends an errorDetail message, has failed: the error
    is its Error line, nothing it sends after reaches the stream, and only the other node
    is learned."""
    failing = [
        {"status": "Pulling from library/alpine", "id": "latest"},
        {"errorDetail": {"message": "pull access denied"}, "error": "pull access denied"},
        {"status": "after the error"},
    ]
    learned: list[str] = []

    async def learn(result: NodeResult) -> None:
        learned.append(result.node.name)

    async with simulated_nodes(progress(failing), progress(pulled(), pause=0.01)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=5, learn=learn)
        got = await run(broadcast)

    assert of(got, "node-1") == [
        labelled("node-1", failing[0]),
        {"status": "Error: pull access denied", "id": "node-1"},
    ]
    assert of(got, "node-2") == [labelled("node-2", m) for m in pulled()]
    assert broadcast.succeeded == [nodes[1]]
    assert broadcast.results[0].error == "pull access denied"
    assert learned == ["node-2"]


async def test_every_node_failing_after_streaming_ends_with_an_error_detail() -> None:
    """When every SIMULATED node fails once streaming began, the stream ends with one error
    message the docker CLI shows as the command's failure, naming the nodes."""
    failing = [
        {"status": "Pulling from library/alpine", "id": "latest"},
        {"errorDetail": {"message": "no space left on device"}, "error": "no space"},
    ]
    async with simulated_nodes(progress(failing), progress(failing)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=5)
        got = await run(broadcast)
    error = "no space left on device (on node-1, node-2)"
    assert got[-1] == {"errorDetail": {"message": error}, "error": error}
    assert sum("errorDetail" in m for m in got) == 1
    assert {"status": "Error: no space left on device", "id": "node-1"} in got
    assert {"status": "Error: no space left on device", "id": "node-2"} in got
    assert broadcast.succeeded == []


# --- simulated nodes: silence ----------------------------------------------------------------


async def test_node_silent_before_its_head_is_inactive() -> None:
    """A SIMULATED node that never sends its head is given up after `inactivity`: alone, it
    is start()'s error."""
    loop = asyncio.get_running_loop()
    async with simulated_nodes(silent_before_head()) as nodes:
        began = loop.time()
        with pytest.raises(DockerError) as caught:
            async with asyncio.timeout(5):
                await Broadcast(nodes, "POST", PULL, inactivity=0.5).start()
        took = loop.time() - began
    assert caught.value.message == "no progress for 0.5s, given up (on node-1)"
    assert caught.value.status == 502
    assert 0.4 <= took < 3


async def test_node_silent_before_its_head_beside_a_streaming_one() -> None:
    """A SIMULATED node that never answers, beside one that streams for longer than the
    bound: the silent one is reported Inactive in the stream, the other succeeds."""
    slow = [{"status": f"step {i}"} for i in range(8)]
    async with simulated_nodes(silent_before_head(), progress(slow, pause=0.1)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=0.4)
        async with asyncio.timeout(5):
            got = await run(broadcast)
    assert of(got, "node-1") == [
        {"status": "Error: no progress for 0.4s, given up", "id": "node-1"}
    ]
    assert of(got, "node-2") == [labelled("node-2", m) for m in slow]
    assert broadcast.succeeded == [nodes[1]]


async def test_node_silent_after_its_head_is_inactive() -> None:
    """A SIMULATED node that sends its head and a first message, then nothing: start()
    returns (streaming began), the node is reported Inactive, and as no node succeeded the
    stream ends with the merged error."""
    first = {"status": "Pulling from library/alpine", "id": "latest"}
    async with simulated_nodes(silent_after_head(first)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=0.4)
        async with asyncio.timeout(5):
            got = await run(broadcast)
    error = "no progress for 0.4s, given up (on node-1)"
    assert got == [
        labelled("node-1", first),
        {"status": "Error: no progress for 0.4s, given up", "id": "node-1"},
        {"errorDetail": {"message": error}, "error": error},
    ]


async def test_node_slow_but_never_silent_for_long_is_not_inactive() -> None:
    """A SIMULATED node whose messages come never more than the bound apart, over a total
    far longer than it, is fine: the bound is on silence, not on time."""
    slow = [{"status": f"step {i}"} for i in range(10)]
    async with simulated_nodes(progress(slow, pause=0.1)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=0.3)
        got = await run(broadcast)
    assert got == [labelled("node-1", m) for m in slow]
    assert broadcast.succeeded == nodes


async def test_close_mid_stream_stops_every_node() -> None:
    """close() while SIMULATED nodes are still streaming stops every node's exchange at
    once (their connections end), and the merged stream then ends."""
    ended: list[str] = []
    both_ended = asyncio.Event()

    def endless(name: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = await streamed(request)
            try:
                while True:
                    await response.write(line({"status": "working"}))
                    await asyncio.sleep(0.02)
            finally:
                ended.append(name)
                if len(ended) == 2:
                    both_ended.set()

        return handler

    async with simulated_nodes(endless("node-1"), endless("node-2")) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=5)
        await broadcast.start()
        stream = aiter(broadcast)
        assert b'"status":"working"' in await anext(stream)
        async with asyncio.timeout(2):
            await broadcast.close()
            rest = [chunk async for chunk in stream]
            await both_ended.wait()
    assert all(b'"status":"working"' in chunk for chunk in rest)
    assert sorted(ended) == ["node-1", "node-2"]


# --- simulated nodes: uploads ----------------------------------------------------------------


def receiving(received: dict[str, bytes], name: str, pause: float = 0.0) -> Handler:
    """A simulated daemon that reads the whole upload (at `pause` seconds a read), keeps it
    in `received[name]`, then answers with its size."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = bytearray()
        async for data in request.content.iter_any():
            body += data
            await asyncio.sleep(pause)
        received[name] = bytes(body)
        response = await streamed(request)
        await response.write(line({"status": f"Loaded {len(body)} bytes"}))
        await response.write_eof()
        return response

    return handler


async def upload(parts: list[bytes], pause: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(pause)


async def test_upload_reaches_every_node_whole_despite_a_dead_node() -> None:
    """An upload (3 MiB in 64 KiB chunks) is received byte for byte by three SIMULATED
    nodes, one of them slow, while a fourth node that is down (a port with nothing behind
    it) fails at once without holding the others back."""
    data = os.urandom(3 * 1024 * 1024)
    parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    received: dict[str, bytes] = {}
    handlers = [receiving(received, f"node-{i}", pause=0.001 if i == 3 else 0) for i in (1, 2, 3)]
    async with simulated_nodes(*handlers) as alive, dead_node("node-4") as dead:
        broadcast = Broadcast(
            [*alive, dead], "POST", "/v1.43/images/load", body=upload(parts), inactivity=5
        )
        async with asyncio.timeout(30):
            got = await run(broadcast)

    assert sorted(received) == ["node-1", "node-2", "node-3"]
    for name in ("node-1", "node-2", "node-3"):
        assert len(received[name]) == len(data)
        assert received[name] == data
        assert of(got, name) == [{"status": f"Loaded {len(data)} bytes", "id": name}]
    [report] = of(got, "node-4")
    assert report["status"].startswith("Error: node node-4 (tcp://127.0.0.1:")
    assert "is unavailable" in report["status"]
    assert broadcast.succeeded == alive
    assert not dead.health.ready


async def test_upload_still_flowing_keeps_a_node_alive() -> None:
    """A SIMULATED node that answers only once it has the whole upload, which takes several
    times the bound to arrive: the flowing upload is not silence."""
    parts = [bytes([i]) * 1000 for i in range(10)]
    received: dict[str, bytes] = {}
    async with simulated_nodes(receiving(received, "node-1")) as nodes:
        broadcast = Broadcast(
            nodes, "POST", "/v1.43/images/load", body=upload(parts, pause=0.1), inactivity=0.3
        )
        async with asyncio.timeout(10):
            got = await run(broadcast)
    assert received["node-1"] == b"".join(parts)
    assert got == [{"status": "Loaded 10000 bytes", "id": "node-1"}]
    assert broadcast.succeeded == nodes


async def test_upload_all_nodes_down() -> None:
    """Every node down: start() raises, naming them, and the upload is not left hanging."""
    parts = [b"x" * 1000] * 100
    async with dead_node("node-1") as one, dead_node("node-2") as two:
        broadcast = Broadcast([one, two], "POST", "/v1.43/images/load", body=upload(parts))
        with pytest.raises(DockerError) as caught:
            async with asyncio.timeout(10):
                await broadcast.start()
    assert caught.value.status == 502
    assert "is unavailable" in caught.value.message
    assert "(on node-1)" in caught.value.message
    assert "(on node-2)" in caught.value.message


async def test_upload_refused_by_one_node_does_not_hold_the_others() -> None:
    """A SIMULATED node that answers 500 at once without reading the upload is reported and
    dropped; the others still receive the whole upload."""
    data = os.urandom(3 * 1024 * 1024)
    parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    received: dict[str, bytes] = {}
    handlers = [
        receiving(received, "node-1"),
        answer(500, "rejected"),
        receiving(received, "node-3"),
    ]
    async with simulated_nodes(*handlers) as nodes:
        broadcast = Broadcast(nodes, "POST", "/v1.43/images/load", body=upload(parts), inactivity=5)
        async with asyncio.timeout(30):
            got = await run(broadcast)
    assert received == {"node-1": data, "node-3": data}
    assert of(got, "node-2") == [{"status": "Error: rejected", "id": "node-2"}]
    assert broadcast.succeeded == [nodes[0], nodes[2]]


async def test_upload_cut_by_the_client_is_never_taken_as_complete() -> None:
    """When the upload's source breaks, no SIMULATED node sees a clean end of its body (a
    short upload that looks whole), and the broadcast fails."""
    outcome: dict[str, str] = {}
    both_seen = asyncio.Event()

    def recording(name: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            size = 0
            try:
                async for data in request.content.iter_any():
                    size += len(data)
            except BaseException:
                outcome[name] = "cut"
                if len(outcome) == 2:
                    both_seen.set()
                raise
            outcome[name] = f"complete, {size} bytes"
            if len(outcome) == 2:
                both_seen.set()
            response = await streamed(request)
            await response.write(line({"status": "Loaded"}))
            await response.write_eof()
            return response

        return handler

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 65536
            await asyncio.sleep(0.01)
        raise OSError("client went away")

    async with simulated_nodes(recording("node-1"), recording("node-2")) as nodes:
        broadcast = Broadcast(nodes, "POST", "/v1.43/images/load", body=broken(), inactivity=5)
        with pytest.raises(DockerError) as caught:
            async with asyncio.timeout(10):
                await broadcast.start()
        # Give the simulated nodes a moment to see their connection end.
        async with asyncio.timeout(2):
            await both_seen.wait()
    assert outcome == {"node-1": "cut", "node-2": "cut"}
    assert "(on node-1)" in caught.value.message
    assert "(on node-2)" in caught.value.message
    assert broadcast.succeeded == []
    # The client broke the upload, not the nodes: their health stays as it was.
    assert [node.health.failures for node in nodes] == [0, 0]


# --- regressions -------------------------------------------------------------------------


async def test_upload_ending_after_the_head_does_not_time_a_streaming_node_out() -> None:
    """A SIMULATED node that sends its head at once, reads the upload while reporting on it,
    then keeps streaming a message every 0.1 s for 1 s, with a bound of 0.4 s: it is never
    silent for the bound, so it must succeed."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await streamed(request)
        size = 0
        async for data in request.content.iter_any():
            size += len(data)
            await response.write(line({"status": f"received {size}"}))
        for i in range(10):
            await asyncio.sleep(0.1)
            await response.write(line({"status": f"loading {i}"}))
        await response.write_eof()
        return response

    parts = [b"x" * 1000] * 5
    async with simulated_nodes(handler) as nodes:
        broadcast = Broadcast(
            nodes, "POST", "/v1.43/images/load", body=upload(parts, pause=0.1), inactivity=0.4
        )
        async with asyncio.timeout(10):
            got = await run(broadcast)
    assert broadcast.results[0].error == ""
    assert got[-1] == {"status": "loading 9", "id": "node-1"}


async def test_node_silent_in_its_error_body_is_inactive(
    loop_errors: list[dict[str, Any]],
) -> None:
    """A SIMULATED node that sends a 500 head, part of its body, then nothing: the bound
    on silence between body chunks must give it up, and start() raise. (`loop_errors` only
    keeps the close() noise of the next test's bug out of the output.)"""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=500, headers={"Content-Type": "application/json", "Content-Length": "100"}
        )
        await response.prepare(request)
        await response.write(b'{"mess')
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async with simulated_nodes(handler) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=0.4)
        with pytest.raises(DockerError) as caught:
            async with asyncio.timeout(2):
                await broadcast.start()
    assert "no progress for 0.4s" in caught.value.message


async def test_close_mid_stream_logs_nothing(loop_errors: list[dict[str, Any]]) -> None:
    """Closing a broadcast mid-stream (the client went away) is routine, not an error for
    asyncio to log."""
    messages = [{"status": f"step {i}"} for i in range(100)]
    async with simulated_nodes(progress(messages, pause=0.05)) as nodes:
        broadcast = Broadcast(nodes, "POST", PULL, inactivity=5)
        await broadcast.start()
        await broadcast.close()
        del broadcast
        gc.collect()
    assert [e.get("message") for e in loop_errors] == []
