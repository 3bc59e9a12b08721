"""Bad input never hurts the proxy: malformed and mistyped bodies, bodies and headers over
the limits, path tricks, unknown endpoints, clients that send nothing or too slowly, and
ten thousand idle connections. Each gets a clear answer in the daemon's style or a clean
close; afterwards the proxy holds no more sockets and no more memory than before, and its
index still knows the containers made before.

The proxies here are the module's own, with small limits (a timeout test must not wait a
minute), over the session's real nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import pathlib
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from swarmproxy.api import connections
from swarmproxy.config import ServerConfig
from swarmproxy.local_nodes import DockerNode, free_port
from tests.conftest import clear, start_proxy
from tests.rig.proxy import Proxy, allow_open_files

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MAX_JSON_BODY = 64 * 1024
MAX_LINE = 8 * 1024
MAX_FIELD = 16 * 1024
HEAD_TIMEOUT = 2.0
IDLE_TIMEOUT = 4.0
LIMITS = (
    f"max_json_body = {MAX_JSON_BODY}\nmax_line_size = {MAX_LINE}\n"
    f"max_field_size = {MAX_FIELD}\nhead_timeout = {HEAD_TIMEOUT}\n"
    f"idle_timeout = {IDLE_TIMEOUT}\n"
)
# Containers made before the abuse, which must still resolve by name after it.
KEPT = ("kept-one", "kept-two")
IDLE_CONNECTIONS = 10_000
# What a proxy may hold beyond its baseline once idle: pooled connections to the nodes
# come and go with the health pings.
FD_SLACK = 8
RSS_SLACK_KB = 16 * 1024


@pytest.fixture(scope="module", params=["memory", "redis"])
def limited(
    request: pytest.FixtureRequest,
    nodes: list[DockerNode],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    """A proxy with small limits, and the containers KEPT made through it."""
    workdir = tmp_path_factory.mktemp("bad-input")
    proxy = start_proxy(request, request.param, nodes, workdir, server_toml=LIMITS)
    try:
        clear(proxy, nodes)
        for name in KEPT:
            proxy.docker("create", "--name", name, "busybox", "sleep", "300")
        yield proxy
    finally:
        clear(proxy, nodes)
        proxy.stop()


# --- what the proxy process holds ----------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(list(pathlib.Path(f"/proc/{pid}/fd").iterdir()))


def rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def client_connections(pid: int, port: int) -> int:
    """The connections the process holds that clients opened to `port` (its listener
    left out): matched by socket inode in /proc/net/tcp*."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            listening = fields[3] == "0A"
            if local_port == port and not listening and fields[9] in inodes:
                count += 1
    return count


def settle(condition: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


# --- talking to it -------------------------------------------------------------------------


def raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send `data` on a fresh connection; what came back, and whether the proxy closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def message_of(proxy: Proxy, method: str, path: str, body: Any = None, **kw: Any) -> tuple:
    status, headers, payload = proxy.request(method, path, body, **kw)
    try:
        message = json.loads(payload).get("message") if payload else None
    except ValueError:
        message = None
    return status, headers, message


def assert_daemon_error(
    proxy: Proxy, method: str, path: str, body: Any, expected: int | tuple[int, ...]
) -> str:
    status, headers, message = message_of(proxy, method, path, body)
    allowed = (expected,) if isinstance(expected, int) else expected
    assert status in allowed, (method, path, status, message)
    assert isinstance(message, str) and message, (method, path, status, headers)
    assert headers.get("X-Swarmproxy-Error") is None or status < 500, (method, path, message)
    return message


# --- bodies --------------------------------------------------------------------------------


CREATE = "/v1.41/containers/create"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[]", "must be an object"),
        (b'"busybox"', "must be an object"),
        (b"null", "must be an object"),
        ({"Image": "busybox", "Env": "A=1"}, "Env must be an array"),
        ({"Image": "busybox", "Labels": ["a"]}, "Labels must be an object"),
        ({"Image": "busybox", "HostConfig": []}, "HostConfig must be an object"),
        ({"Image": "busybox", "HostConfig": {"PortBindings": 5}}, "PortBindings"),
        ({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": "x"}}}, "PortBindings"),
        ({"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [1]}}}, "PortBindings"),
        ({"Image": "busybox", "HostConfig": {"Mounts": {"a": 1}}}, "Mounts"),
        ({"Image": "busybox", "HostConfig": {"Mounts": ["vol:/x"]}}, "Mounts"),
        ({"Image": "busybox", "HostConfig": {"Binds": "vol:/x"}}, "Binds"),
        ({"Image": "busybox", "HostConfig": {"Links": {"a": "b"}}}, "Links"),
        ({"Image": "busybox", "HostConfig": {"VolumesFrom": 3}}, "VolumesFrom"),
        ({"Image": "busybox", "Labels": {"com.docker.swarm.constraints": "5"}}, "constraints"),
        ({"Image": "busybox", "Env": ["constraint:node=="]}, "constraint"),
    ],
)
def test_a_malformed_create_is_the_clients_400(limited: Proxy, body: Any, words: str) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    message = assert_daemon_error(limited, "POST", f"{CREATE}?name={name}", body, 400)
    assert words in message
    # The name is not held by the refused create.
    limited.docker("create", "--name", name, "busybox", "true")
    limited.docker("rm", name)


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        # Wrong types that only the node reads: the daemon's own refusal, passed on.
        ("POST", CREATE, {"Image": 5}, (400, 500)),
        ("POST", CREATE, {"Image": "busybox", "Cmd": {"a": 1}}, (400, 500)),
        ("POST", CREATE, {"Image": "busybox", "HostConfig": {"Memory": "lots"}}, (400, 500)),
        ("POST", "/volumes/create", b"{bad", (400, 500)),
        ("POST", "/volumes/create", {"Name": 5}, (400, 500)),
        ("POST", "/volumes/create", {"Name": "a/b"}, (400, 500)),
        ("POST", "/networks/create", b"{bad", (400, 500)),
        ("POST", "/networks/create", {"Name": ["x"]}, (400, 500)),
        ("POST", "/networks/bridge/connect", b"{bad", (400, 500)),
        ("POST", "/networks/bridge/connect", {"Container": 5}, (400, 500)),
        ("POST", "/networks/bridge/disconnect", {}, (400, 404, 500)),
        ("POST", "/containers/kept-one/exec", b"{bad", (400, 500)),
        ("POST", "/containers/kept-one/exec", {"Cmd": "ls"}, (400, 500)),
        ("POST", "/commit?container=kept-one", b"{bad", (400, 500)),
        ("POST", "/commit?container=", b"{}", (400, 404)),
        ("POST", "/containers/kept-one/rename?name=a%2Fb", None, 400),
        ("POST", "/containers/kept-one/rename?name=a%00b", None, 400),
        ("GET", "/containers/json?limit=abc", None, (400, 500)),
        ("GET", "/containers/json?filters=%7Bbad", None, (400, 500)),
        ("GET", "/images/json?filters=%7Bbad", None, (400, 500)),
        ("GET", "/images/json?filters=%7B%22since%22%3A5%7D", None, (400, 500)),
        ("GET", "/images/json?filters=%7B%22before%22%3A%22busybox%22%7D", None, (400, 500)),
        ("POST", "/volumes/create", b"[]", 400),
        ("POST", "/networks/bridge/connect", b"[]", 400),
        ("GET", "/volumes?filters=%7Bbad", None, (400, 500)),
        ("GET", "/networks?filters=%7Bbad", None, (400, 500)),
        ("GET", "/events?since=x&until=y", None, (400, 500)),
        ("GET", "/images/get?names=", None, (400, 500)),
        ("POST", "/images/create?fromImage=", None, (400, 500)),
        # A load streams its progress: a bad tar is an error line in a 200.
        ("POST", "/images/load", b"not a tar", (200, 400, 500)),
        ("POST", "/build", b"not a tar", (400, 500)),
        ("POST", "/images/busybox/tag?repo=BAD%20NAME", None, (400, 404, 500)),
    ],
)
def test_bad_bodies_and_queries_get_the_daemons_answer(
    limited: Proxy, method: str, path: str, body: Any, expected: int | tuple[int, ...]
) -> None:
    status, headers, payload = limited.request(method, path, body)
    allowed = (expected,) if isinstance(expected, int) else expected
    assert status in allowed, (status, payload[:300])
    if status >= 400:
        assert json.loads(payload)["message"], payload
    # A 5xx here is a node's, passed on: never one the proxy made itself.
    assert status < 500 or "X-Swarmproxy-Error" not in headers, payload[:300]


def test_a_json_body_over_the_limit_is_413(limited: Proxy) -> None:
    big = {"Image": "busybox", "Env": ["A=" + "x" * MAX_JSON_BODY]}
    for path in (CREATE, "/volumes/create", "/networks/create", "/containers/kept-one/exec"):
        status, headers, message = message_of(limited, "POST", path, big)
        assert status == 413, (path, status, message)
        assert f"the limit is {MAX_JSON_BODY} bytes" in message
        assert headers["Content-Type"] == "application/json"
    # Declared far bigger than it is sent: refused as well, without waiting for the rest.
    answer, _ = raw(
        limited.port,
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n" + b"[" * (MAX_JSON_BODY + 1),
        timeout=30,
    )
    assert status_of(answer) == 413, answer[:300]


def test_streamed_bodies_are_not_bounded_by_the_json_limit(limited: Proxy) -> None:
    image = limited.request("GET", "/images/busybox:latest/get")
    assert image[0] == 200 and len(image[2]) > MAX_JSON_BODY
    status, _, payload = limited.request(
        "POST", "/images/load?quiet=1", image[2], headers={"Content-Type": "application/x-tar"}
    )
    assert status == 200, payload[:300]
    archive = image[2]  # any tar bigger than the limit will do
    status, _, payload = limited.request(
        "PUT",
        "/containers/kept-one/archive?path=/tmp",
        archive,
        headers={"Content-Type": "application/x-tar"},
    )
    assert status == 200, payload[:300]


# --- heads ---------------------------------------------------------------------------------


def test_a_request_line_or_header_over_the_limit_is_a_clean_400(limited: Proxy) -> None:
    long_path = b"/containers/" + b"a" * MAX_LINE + b"/json"
    long_header = b"X-Registry-Auth: " + b"a" * (MAX_FIELD + 1) + b"\r\n"
    many_headers = b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
    for head in (
        b"GET " + long_path + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\n" + long_header + b"\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\n" + many_headers + b"\r\n",
    ):
        answer, closed = raw(limited.port, head)
        assert status_of(answer) in (400, 431), answer[:200]
        assert closed
    # Just under the limits is served.
    fits = b"X-Registry-Auth: " + b"a" * (MAX_FIELD - 100) + b"\r\n"
    answer, _ = raw(
        limited.port, b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fits + b"\r\n"
    )
    assert status_of(answer) == 200, answer[:200]


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
        b"GET /_p\x00ing HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /_ping HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    ],
)
def test_a_malformed_head_is_a_clean_400(limited: Proxy, head: bytes) -> None:
    answer, closed = raw(limited.port, head)
    assert answer.startswith(b"HTTP/1."), answer[:200]
    assert status_of(answer) == 400, answer[:200]
    assert closed


# --- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/containers/..%2F..%2Fimages%2Fjson/json", 404),
        ("GET", "/containers/%2E%2E/json", 404),
        ("GET", "/containers/a%2Fb/json", 404),
        ("GET", "/containers/a%00b/json", 404),
        ("GET", "/containers/%2Fkept-one/json", 200),
        ("GET", "/containers/k%C3%A9pt/json", 404),
        ("GET", "/containers/" + "f" * 2000 + "/json", 404),
        ("GET", "/containers/kept-one%0D%0AX-Evil:%201/json", 404),
        ("GET", "/containers/../images/json", 404),
        ("GET", "/v1.41/containers/..%2Fkept-one/json", 404),
        ("DELETE", "/containers/..%2Fkept-one", 404),
        ("POST", "/containers/..%2Fkept-one/start", 404),
        ("GET", "/images/..%2Fcontainers%2Fjson/json", 404),
        ("GET", "/images/%2E%2E/json", 404),
        ("GET", "/images/a%2F%2Fb/json", 404),
        ("GET", "/images/busybox%00/json", (400, 404)),
        ("DELETE", "/images/..%2F..%2Fcontainers%2Fkept-one", 404),
        ("POST", "/images/..%2Fbusybox/tag?repo=x", 404),
        ("GET", "/volumes/..%2Fx", 404),
        ("GET", "/volumes/%2E%2E", 404),
        ("DELETE", "/volumes/..%2Fx", 404),
        ("GET", "/volumes/a%00b", 404),
        ("GET", "/networks/..%2Fbridge", 404),
        ("DELETE", "/networks/..%2Fbridge", 404),
        ("POST", "/networks/..%2Fbridge/connect", 404),
        ("GET", "/networks/a%00b", 404),
        ("GET", "/exec/..%2Fx/json", 404),
        ("POST", "/exec/x%00/start", 404),
        ("GET", "/exec/" + "0" * 64 + "/json", 404),
        ("GET", "/nope", 404),
        ("GET", "/v1.41/nope", 404),
        ("GET", "/v9.99/_ping", 400),
        ("GET", "/v1.x/_ping", 404),
        ("PATCH", "/containers/kept-one/json", 404),
        ("PUT", "/_ping", 404),
        ("GET", "/session", 404),
        ("POST", "/swarm/init", 404),
        ("GET", "/services", 404),
        ("GET", "/swarmproxy/v1/nodes", 404),
    ],
)
def test_path_tricks_and_unknown_endpoints_are_answered(
    limited: Proxy, method: str, path: str, expected: int | tuple[int, ...]
) -> None:
    status, _, payload = limited.request(method, path)
    allowed = (expected,) if isinstance(expected, int) else expected
    assert status in allowed, (status, payload[:300])
    if status >= 400 and payload:
        assert json.loads(payload)["message"] if payload.startswith(b"{") else payload
    assert limited.json("GET", "/containers/kept-one/json")[0] == 200


# --- timeouts ------------------------------------------------------------------------------


def closed_after(sock: socket.socket, limit: float, trickle: bytes = b"") -> float:
    """Seconds until the proxy closes `sock`, sending `trickle` every half second."""
    started = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - started < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - started
        except ConnectionResetError:
            return time.monotonic() - started
    raise AssertionError(f"still open after {limit} s")


def test_a_client_that_sends_nothing_is_closed_after_the_head_timeout(limited: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        waited = closed_after(sock, HEAD_TIMEOUT + 5)
    assert HEAD_TIMEOUT - 0.5 <= waited <= HEAD_TIMEOUT + 2


def test_a_head_dribbled_forever_is_cut_at_the_head_timeout(limited: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        waited = closed_after(sock, HEAD_TIMEOUT + 5, trickle=b"X-Slow: 1\r\n")
    assert HEAD_TIMEOUT - 0.5 <= waited <= HEAD_TIMEOUT + 2


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(limited: Proxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=30)
    try:
        for _ in range(3):
            # Within the timeouts, one connection serves request after request.
            conn.request("GET", "/_ping")
            assert conn.getresponse().read() == b"OK"
            time.sleep(HEAD_TIMEOUT + 0.5)
        assert conn.sock is not None
        waited = closed_after(conn.sock, IDLE_TIMEOUT + 5)
        assert IDLE_TIMEOUT - 1 - HEAD_TIMEOUT <= waited <= IDLE_TIMEOUT + 2
    finally:
        conn.close()


def test_a_slow_answer_or_a_long_stream_is_not_cut_by_the_timeouts(limited: Proxy) -> None:
    name = f"slow-{uuid.uuid4().hex[:8]}"
    limited.docker("run", "-d", "--name", name, "busybox", "sleep", str(IDLE_TIMEOUT + 2))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=60)
        started = time.monotonic()
        conn.request("POST", f"/containers/{name}/wait")
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["StatusCode"] == 0
        assert time.monotonic() - started > HEAD_TIMEOUT + IDLE_TIMEOUT - 2
        # The same connection goes on serving.
        conn.request("GET", "/_ping")
        assert conn.getresponse().read() == b"OK"
        conn.close()
    finally:
        limited.docker("rm", "-f", name, check=False)


def test_a_json_body_that_stops_coming_is_a_408(limited: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=HEAD_TIMEOUT + 5) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /containers/create?name=stalled HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = sock.recv(65536)
        assert time.monotonic() - started < HEAD_TIMEOUT + 2
    assert status_of(answer) == 408, answer[:300]
    assert b"request body not received within" in answer
    # The name was never claimed.
    limited.docker("create", "--name", "stalled", "busybox", "true")
    limited.docker("rm", "stalled")


def test_pipelined_requests_are_all_answered(limited: Proxy) -> None:
    ping = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, _ = raw(
        limited.port, ping * 3 + b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 4, answer


# --- afterwards ----------------------------------------------------------------------------


def abuse(proxy: Proxy) -> None:
    """A round of every kind of bad input above, quickly."""
    for body in (b"{not json", b"[]", {"Image": "busybox", "HostConfig": {"PortBindings": 5}}):
        proxy.request("POST", CREATE, body)
    proxy.request("POST", CREATE, {"Image": "busybox", "Env": ["A=" + "x" * MAX_JSON_BODY]})
    for path in ("/containers/..%2Fx/json", "/images/..%2Fx/json", "/volumes/..%2Fx", "/nope"):
        proxy.request("GET", path)
    for head in (
        b"GARBAGE\r\n\r\n",
        b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nX: " + b"a" * MAX_FIELD + b"\r\n\r\n",
    ):
        raw(proxy.port, head)
    # Connections that say nothing, or half a head, then go away.
    for data in (b"", b"GET /_ping HTTP/1.1\r\n", b"POST /containers/create HTTP/1.1\r\n"):
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(data)
    # A body promised and never sent, the client gone.
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"POST /containers/create HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")


def test_after_all_of_it_the_proxy_holds_nothing_more_and_its_index_is_intact(
    limited: Proxy,
) -> None:
    pid = limited.process.pid
    abuse(limited)  # warms up what the proxy caches for good
    assert settle(lambda: client_connections(pid, limited.port) == 0)
    fds, rss = open_fds(pid), rss_kb(pid)
    for _ in range(5):
        abuse(limited)
    assert settle(lambda: client_connections(pid, limited.port) == 0), "client sockets leak"
    assert settle(lambda: open_fds(pid) <= fds + FD_SLACK), (fds, open_fds(pid))
    assert rss_kb(pid) <= rss + RSS_SLACK_KB, (rss, rss_kb(pid))
    assert limited.process.poll() is None
    assert limited.request("GET", "/_ping")[2] == b"OK"
    for name in KEPT:
        status, inspect = limited.json("GET", f"/containers/{name}/json")
        assert status == 200 and inspect["Name"] == f"/{name}"
    listed = limited.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert set(KEPT) <= set(listed)


def test_ten_thousand_idle_connections_come_and_go(
    nodes: list[DockerNode], tmp_path: pathlib.Path
) -> None:
    needed = IDLE_CONNECTIONS + 1000
    allow_open_files(needed)
    proxy = Proxy.start(tmp_path, nodes, open_files=needed)
    sockets: list[socket.socket] = []
    try:
        pid = proxy.process.pid
        assert proxy.request("GET", "/_ping")[2] == b"OK"
        baseline = open_fds(pid)
        for _ in range(IDLE_CONNECTIONS):
            sockets.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=30))
        assert settle(lambda: client_connections(pid, proxy.port) == IDLE_CONNECTIONS, 60), (
            client_connections(pid, proxy.port)
        )
        # Still serving while holding them all.
        assert proxy.request("GET", "/_ping")[2] == b"OK"
        assert proxy.json("GET", "/containers/json?all=1")[0] == 200
        for sock in sockets:
            sock.close()
        sockets.clear()
        assert settle(lambda: client_connections(pid, proxy.port) == 0, 60)
        assert settle(lambda: open_fds(pid) <= baseline + FD_SLACK, 30), (
            baseline,
            open_fds(pid),
        )
        assert proxy.process.poll() is None
        assert proxy.request("GET", "/_ping")[2] == b"OK"
    finally:
        for sock in sockets:
            sock.close()
        proxy.stop()


async def test_connections_leave_no_task_timer_or_socket_behind() -> None:
    """In process, where tasks can be counted: every kind of connection above ends, by the
    client or by a timeout, with nothing left of it."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application(middlewares=[connections.heads])
    app.router.add_get("/", hello)
    limits = ServerConfig(head_timeout=0.5, idle_timeout=1.0, max_line_size=1024)
    runner = connections.ProxyRunner(app, limits, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        baseline = len(asyncio.all_tasks())
        sent = [
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET /" + b"a" * 2048 + b" HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{",
        ]
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in sent]
        for (_, writer), data in zip(clients, sent, strict=True):
            writer.write(data)
        # Each one is closed by the proxy: an answer (maybe), then the end of the stream; a
        # body promised and not sent is waited for aiohttp's lingering time (10 s).
        for reader, writer in clients:
            await asyncio.wait_for(reader.read(), timeout=15)
            writer.close()
        # A client that goes away by itself, mid-head.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")
        await writer.drain()
        writer.close()
        for _ in range(50):
            if not runner.server or not runner.server.connections:
                break
            await asyncio.sleep(0.1)
        assert runner.server is not None and runner.server.connections == []
        assert len(asyncio.all_tasks()) <= baseline, asyncio.all_tasks()
    finally:
        await runner.cleanup()
