"""The fast lane (swarmproxy.api.fast_lane): what it answers is what the full path answers,
byte for byte but for the Date and the request ID, and whatever it cannot answer exactly so
reaches the full path whole, in order, on the same connection."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import Proxy, serving
from tests.test_e2e_metrics import scrape, total

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# Sent first, this request is not the lane's: the connection is the full path's after it.
TO_THE_FULL_PATH = b"GET /version HTTP/1.1\r\nHost: docker\r\n\r\n"
VARYING = {"date", "x-request-id"}


def head(method: str, target: str, *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: docker", "User-Agent: lane-test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    def fixed_headers(self) -> list[tuple[str, str]]:
        return sorted((k.lower(), v) for k, v in self.headers if k.lower() not in VARYING)


def read_answers(sock: socket.socket, count: int, *, bodiless: int = -1) -> list[Answer]:
    """`count` answers off the socket, in order; the one at `bodiless` answers a HEAD."""
    data = b""
    answers: list[Answer] = []
    sock.settimeout(10)
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            lines = data[:end].decode("latin-1").split("\r\n")
            headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            if len(answers) == bodiless:
                length = 0
            if len(data) >= end + 4 + length:
                status = int(lines[0].split(" ")[1])
                body = data[end + 4 : end + 4 + length]
                answers.append(Answer(status, headers, body))  # type: ignore[arg-type]
                data = data[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answers: {data[:300]!r}"
        data += chunk
    return answers


def exchange(proxy: Proxy, request: bytes, *, full_path: bool, bodiless: bool = False) -> Answer:
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        if full_path:
            sock.sendall(TO_THE_FULL_PATH)
            read_answers(sock, 1)
        sock.sendall(request)
        return read_answers(sock, 1, bodiless=0 if bodiless else -1)[0]


@pytest.fixture(scope="module")
def running(proxy: Proxy) -> Iterator[tuple[str, str]]:
    name = f"lane-{uuid.uuid4().hex[:8]}"
    container_id = proxy.docker("run", "-d", "--name", name, "busybox", "sleep", "600").stdout
    yield container_id.strip(), name
    proxy.docker("rm", "-f", name, check=False)


@pytest.mark.parametrize(
    "method, target",
    [
        ("GET", "/_ping"),
        ("HEAD", "/_ping"),
        ("GET", "/v1.41/_ping"),
        ("HEAD", "/v1.24/_ping"),
        ("GET", "/containers/{id}/json"),
        ("GET", "/v1.41/containers/{id}/json"),
        ("GET", "/v1.41/containers/{id}/json?size=1"),
    ],
)
def test_the_lane_answers_as_the_full_path_does(
    proxy: Proxy, running: tuple[str, str], method: str, target: str
) -> None:
    container_id, _ = running
    request = head(method, target.format(id=container_id), "X-Request-Id: lane-1")
    lane = exchange(proxy, request, full_path=False, bodiless=method == "HEAD")
    full = exchange(proxy, request, full_path=True, bodiless=method == "HEAD")
    assert lane.status == full.status == 200
    assert lane.fixed_headers() == full.fixed_headers()
    assert lane.header("X-Request-Id") == full.header("X-Request-Id") == "lane-1"
    if "size=1" in target:
        # A size is worked out afresh for each inspect; the rest is the same container.
        lane_body, full_body = json.loads(lane.body), json.loads(full.body)
        assert "SizeRootFs" in lane_body and "SizeRootFs" in full_body
        assert lane_body["Id"] == full_body["Id"] and lane_body["Node"] == full_body["Node"]
    else:
        assert lane.body == full.body
    if "containers" in target:
        assert json.loads(lane.body)["Node"]["Name"].startswith("node-")
    elif method == "GET":
        assert lane.body == b"OK"


def test_a_ping_from_the_lane_is_logged_and_counted(proxy: Proxy) -> None:
    request_id = f"lane-{uuid.uuid4().hex[:8]}"
    answer = exchange(proxy, head("GET", "/_ping", f"X-Request-Id: {request_id}"), full_path=False)
    assert answer.status == 200
    proxy.wait_logged(request_id)
    line = next(line for line in proxy.log_tail(400).splitlines() if request_id in line)
    assert "event=request" in line and "path=/_ping" in line and "status=200" in line


def test_pipelined_requests_are_answered_in_order_across_the_hand_over(
    proxy: Proxy, running: tuple[str, str]
) -> None:
    container_id, name = running
    requests = [
        head("GET", "/_ping"),
        head("GET", f"/containers/{container_id}/json"),
        head("GET", f"/containers/{name}/json"),
        head("GET", "/version"),
        head("GET", "/_ping"),
        head("GET", f"/containers/{container_id}/json"),
        head("GET", "/containers/no-such-container-here/json"),
    ]
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"".join(requests))
        answers = read_answers(sock, len(requests))
    assert [a.status for a in answers] == [200, 200, 200, 200, 200, 200, 404]
    assert answers[0].body == answers[4].body == b"OK"
    for answer in (answers[1], answers[2], answers[5]):
        assert json.loads(answer.body)["Id"] == container_id
    assert "ApiVersion" in json.loads(answers[3].body)
    assert json.loads(answers[6].body) == {"message": "No such container: no-such-container-here"}


def test_a_head_in_pieces_is_answered(proxy: Proxy, running: tuple[str, str]) -> None:
    container_id, _ = running
    request = head("GET", "/_ping") + head("GET", f"/containers/{container_id}/json")
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for at in range(0, len(request), 7):
            sock.sendall(request[at : at + 7])
            time.sleep(0.001)
        answers = read_answers(sock, 2)
    assert answers[0].body == b"OK" and json.loads(answers[1].body)["Id"] == container_id


@pytest.mark.parametrize(
    "request_bytes, status, words",
    [
        (head("GET", "/containers/nothing-of-that-name/json"), 404, b"No such container"),
        (head("GET", "/v1.99/_ping"), 400, b"is too new"),
        (head("GET", "/v1.99/containers/x/json"), 400, b"is too new"),
        (head("POST", "/_ping"), 404, b"page not found"),
        (head("GET", "/_ping", "Content-Length: 0"), 200, b"OK"),
        (head("GET", "/_ping", "Connection: close"), 200, b"OK"),
        (b"GET /_ping HTTP/1.0\r\n\r\n", 200, b"OK"),
        (b"GET /_ping HTTP/1.1\r\nNo colon here\r\n\r\n", 400, b""),
        (head("GET", "/containers/%2e%2e/json"), 404, b"page not found"),
    ],
)
def test_what_the_lane_does_not_answer_the_full_path_does(
    proxy: Proxy, request_bytes: bytes, status: int, words: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(request_bytes)
        (answer,) = read_answers(sock, 1)
    assert answer.status == status, answer.body
    assert words in answer.body


def test_an_inspect_whose_node_is_gone_is_the_full_paths_error(
    nodes: list[DockerNode], crashing_node: DockerNode, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Proxy.start(tmp_path_factory.mktemp("lane-node-gone"), [nodes[0], crashing_node])
    try:
        container_id = proxy.docker(
            "create", "-e", f"constraint:node=={crashing_node.name}", "busybox", "true"
        ).stdout.strip()
        inspect = head("GET", f"/containers/{container_id}/json")
        assert exchange(proxy, inspect, full_path=False).status == 200
        crashing_node.crash()
        answer = exchange(proxy, inspect, full_path=False)
        assert answer.status in (502, 503), answer.body
        assert crashing_node.name.encode() in answer.body
        # The proxy goes on serving, in the lane and out of it.
        assert exchange(proxy, head("GET", "/_ping"), full_path=False).body == b"OK"
    finally:
        proxy.stop()


def test_an_idle_connection_in_the_lane_is_closed_after_the_idle_timeout(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with (
        serving(
            tmp_path_factory.mktemp("lane-idle"),
            nodes,
            server_toml="idle_timeout = 2.0\nhead_timeout = 1.0\n",
        ) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(head("GET", "/_ping"))
        assert read_answers(sock, 1)[0].body == b"OK"
        started = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(100) == b""
        assert 1.5 <= time.monotonic() - started <= 4


def test_a_policy_in_force_judges_what_the_lane_would_have_answered(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    policy = '[policy]\ndenied_endpoints = ["GET /containers/*/json"]\n'
    with serving(tmp_path_factory.mktemp("lane-policy"), nodes, extra_toml=policy) as proxy:
        container_id = proxy.docker("create", "busybox", "true").stdout.strip()
        answer = exchange(proxy, head("GET", f"/containers/{container_id}/json"), full_path=False)
    assert answer.status == 403, answer.body
    assert b"GET /containers/*/json" in answer.body


def test_the_lane_counts_what_it_answers_and_docker_py_takes_it(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Answers in the lane are counted apart (and in the request counts, as any); the full
    path's are not. requests (docker-py) says `Connection: keep-alive`: still the lane's."""
    with serving(tmp_path_factory.mktemp("lane-counted"), nodes) as proxy:
        container_id = proxy.docker("create", "busybox", "true").stdout.strip()
        _, _, before = scrape(proxy)
        for _ in range(3):
            exchange(proxy, head("GET", "/_ping", "Connection: keep-alive"), full_path=False)
            exchange(proxy, head("GET", f"/containers/{container_id}/json"), full_path=False)
            exchange(proxy, head("GET", "/_ping"), full_path=True)
        _, _, after = scrape(proxy)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    lane = "swarmproxy_fast_lane_answers_total"
    assert grew(lane, endpoint="/_ping") == 3
    assert grew(lane, endpoint="/containers/{id}/json") == 3
    requests = "swarmproxy_requests_total"
    assert grew(requests, endpoint="/_ping", status="200") == 6
    assert grew(requests, endpoint="/containers/{id}/json", status="200") == 3


def read_streamed(sock: socket.socket) -> tuple[Answer, bytes]:
    """A chunked 200 read to its last chunk: its head, and its body de-chunked."""
    data = b""
    sock.settimeout(30)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    end = data.index(b"\r\n\r\n")
    lines = data[:end].decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    answer = Answer(int(lines[0].split(" ")[1]), headers, b"")  # type: ignore[arg-type]
    rest, body = data[end + 4 :], b""
    while True:
        while b"\r\n" not in rest:
            more = sock.recv(65536)
            assert more, "cut before the last chunk"
            rest += more
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            more = sock.recv(65536)
            assert more, "cut inside a chunk"
            rest += more
        if size == 0:
            return answer, body
        body, rest = body + rest[:size], rest[size + 2 :]


def test_logs_in_the_lane_are_the_full_paths_and_the_connection_goes_on(
    proxy: Proxy, running: tuple[str, str]
) -> None:
    name = f"lane-logs-{uuid.uuid4().hex[:8]}"
    script = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; echo err >&2"
    proxy.docker("run", "--name", name, "busybox", "sh", "-c", script)
    try:
        request = head("GET", f"/v1.41/containers/{name}/logs?stdout=1&stderr=1&timestamps=0")
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(request)
            lane, lane_body = read_streamed(sock)
            # The same connection serves on, in the lane.
            sock.sendall(head("GET", "/_ping"))
            assert read_answers(sock, 1)[0].body == b"OK"
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(TO_THE_FULL_PATH)
            read_answers(sock, 1)
            sock.sendall(request)
            full, full_body = read_streamed(sock)
        # The lane passes the daemon's own answer on: its headers are the node's.
        address = proxy.json("GET", f"/containers/{name}/json")[1]["Node"]["Addr"]
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request)
            daemon, daemon_body = read_streamed(sock)
        assert lane.status == full.status == daemon.status == 200
        assert lane.fixed_headers() == daemon.fixed_headers()
        # aiohttp's own default, which the daemon does not send, is the full path's one extra.
        unlabelled = ("content-type", "application/octet-stream")
        assert [h for h in full.fixed_headers() if h != unlabelled] == lane.fixed_headers()
        assert lane_body == full_body == daemon_body
        assert b"line 2999\n" in lane_body and b"err\n" in lane_body
        # And as the docker CLI reads it.
        logged = proxy.docker("logs", name)
        assert logged.stdout.splitlines()[-1] == "line 2999" and logged.stderr == "err\n"
    finally:
        proxy.docker("rm", "-f", name, check=False)


def test_logs_follow_in_the_lane_streams_as_written_and_ends_with_the_container(
    proxy: Proxy,
) -> None:
    name = f"lane-follow-{uuid.uuid4().hex[:8]}"
    proxy.docker(
        "run", "-d", "--name", name, "busybox", "sh", "-c",
        "echo first; sleep 2; echo second",
    )  # fmt: skip
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(head("GET", f"/containers/{name}/logs?stdout=1&follow=1"))
            sock.settimeout(10)
            seen = b""
            started = time.monotonic()
            while b"first" not in seen:
                seen += sock.recv(65536)
            # The first line arrives before the container has written the second.
            assert time.monotonic() - started < 1.5
            while not seen.endswith(b"0\r\n\r\n"):
                more = sock.recv(65536)
                assert more, seen
                seen += more
            assert b"second" in seen
    finally:
        proxy.docker("rm", "-f", name, check=False)


def test_a_logs_request_the_lane_cannot_stream_is_the_full_paths(proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(head("GET", "/containers/no-such-thing-here/logs?stdout=1"))
        (answer,) = read_answers(sock, 1)
    assert answer.status == 404
    assert json.loads(answer.body) == {"message": "No such container: no-such-thing-here"}
