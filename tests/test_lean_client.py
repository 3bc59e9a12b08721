"""The lean client's reading of an answer (swarmproxy.lean_client): whole answers only, with
a length or chunked; anything else is a failure the caller falls back from."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from swarmproxy.lean_client import Framing, LeanCallFailed, LeanClient, _parse, _parse_head

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def parsed(data: bytes) -> tuple[int, list[bytes], bytes] | None:
    answer = _parse(bytearray(data))
    return None if answer is None else (answer.status, answer.header_lines, answer.body)


def test_an_answer_with_a_length() -> None:
    data = HEAD + b"Content-Length: 2\r\n\r\n{}"
    assert parsed(data) == (200, [b"Content-Type: application/json", b"Content-Length: 2"], b"{}")
    # Not yet whole: wait for more.
    assert parsed(data[:-1]) is None
    assert parsed(data[:20]) is None


def test_a_chunked_answer() -> None:
    data = HEAD + b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4;x=y\r\n":1}\r\n0\r\n\r\n'
    assert parsed(data) is not None and parsed(data)[2] == b'{"a":1}'  # type: ignore[index]
    for cut in range(len(HEAD) + 30, len(data)):
        assert parsed(data[:cut]) is None, cut


def test_an_answer_with_no_body() -> None:
    assert parsed(b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n") == (204, [b"Server: x"], b"")


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        HEAD + b"\r\n{}",  # a 200 with no length: read until the close
        HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
        HEAD + b"Connection: close\r\nContent-Length: 2\r\n\r\n{}",
        HEAD + b"Content-Length: 2\r\n\r\n{}extra",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n\r\n",
        HEAD + b"Content-Length: 999999999\r\n\r\n",
    ],
)
def test_what_is_no_whole_short_answer_fails(data: bytes) -> None:
    with pytest.raises(LeanCallFailed):
        _parse(bytearray(data))


async def test_a_connection_is_kept_and_one_closed_by_the_node_is_not_reused() -> None:
    """Against a server of the test's own: the second call reuses the first one's
    connection; after the server closes it, the next call opens another."""
    accepted: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanClient("127.0.0.1", port)
    try:
        for _ in range(3):
            assert (await client.get(b"/x", [b"User-Agent: t"])).body == b"OK"
        assert len(accepted) == 1
        accepted[0].close()
        await asyncio.sleep(0.1)
        assert (await client.get(b"/x", [])).body == b"OK"
        assert len(accepted) == 2
    finally:
        client.close()
        server.close()
        await server.wait_closed()


async def test_a_node_that_refuses_the_connection_fails_the_call() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(LeanCallFailed):
        await LeanClient("127.0.0.1", port).get(b"/x", [])


def framing(head: bytes) -> Framing:
    parsed = _parse_head(bytearray(head))
    assert parsed is not None
    return Framing(parsed)


def test_the_framing_of_a_chunked_body_fed_in_any_pieces() -> None:
    body = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    for piece in (1, 2, 3, 7, len(body)):
        tracked = framing(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for at in range(0, len(body), piece):
            assert not tracked.done
            tracked.feed(body[at : at + piece])
        assert tracked.done, piece


def test_the_framing_of_a_body_with_a_length_or_none() -> None:
    tracked = framing(HEAD + b"Content-Length: 4\r\n\r\n")
    tracked.feed(b"ab")
    assert not tracked.done
    tracked.feed(b"cd")
    assert tracked.done
    assert framing(b"HTTP/1.1 204 No Content\r\n\r\n").done


@pytest.mark.parametrize(
    "head, body",
    [
        (HEAD + b"Content-Length: 2\r\n\r\n", b"abc"),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"1\r\na\r\n0\r\n\r\nextra"),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"zz\r\n"),
    ],
)
def test_the_framing_refuses_what_is_past_or_outside_the_answer(head: bytes, body: bytes) -> None:
    with pytest.raises(LeanCallFailed):
        framing(head).feed(body)
