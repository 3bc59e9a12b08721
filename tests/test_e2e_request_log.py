"""One structured line per request (JSON with `[log] format = "json"`), with method, path,
status, node, duration and request ID; the ID is answered in `X-Request-Id`, and a client's
own ID is kept."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import Proxy, serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def json_logged(
    nodes: list[DockerNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    with serving(
        tmp_path_factory.mktemp("json-log"), nodes, extra_toml='[log]\nformat = "json"\n'
    ) as proxy:
        yield proxy


def logged_lines(proxy: Proxy, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The proxy's lines for the request, once its request line is written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            json.loads(line)
            for line in proxy.log_path.read_text().splitlines()
            if line.startswith("{") and request_id in line
        ]
        if any(line["event"] == "request" for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_every_request_is_one_json_line_with_its_id(json_logged: Proxy) -> None:
    status, headers, _ = json_logged.request("GET", "/v1.41/_ping")
    assert status == 200
    request_id = headers["X-Request-Id"]
    assert len(request_id) == 16
    (line,) = [line for line in logged_lines(json_logged, request_id) if line["event"] == "request"]
    assert line["method"] == "GET" and line["path"] == "/v1.41/_ping"
    assert line["status"] == 200 and line["request_id"] == request_id
    assert line["level"] == "info" and line["logger"] == "swarmproxy.http"
    assert isinstance(line["duration_ms"], float)


def test_a_routed_request_names_its_node_and_keeps_the_clients_id(json_logged: Proxy) -> None:
    container_id = json_logged.docker("create", "busybox", "true").stdout.strip()
    status, headers, _ = json_logged.request(
        "GET", f"/v1.41/containers/{container_id}/json", headers={"X-Request-Id": "ci-job-42"}
    )
    assert status == 200
    # The node's own answer is relayed, and still carries the request's ID.
    assert headers["X-Request-Id"] == "ci-job-42"
    (line,) = [
        line for line in logged_lines(json_logged, "ci-job-42") if line["event"] == "request"
    ]
    assert line["node"].startswith("node-") and line["status"] == 200


def test_an_unusable_client_id_is_replaced(json_logged: Proxy) -> None:
    _, headers, _ = json_logged.request("GET", "/_ping", headers={"X-Request-Id": "a b"})
    assert headers["X-Request-Id"] != "a b" and len(headers["X-Request-Id"]) == 16


def test_what_is_logged_while_serving_names_the_request(json_logged: Proxy) -> None:
    status, headers, _ = json_logged.request(
        "POST", "/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"]}
    )
    assert status == 201
    lines = logged_lines(json_logged, headers["X-Request-Id"])
    # The placement's own line, then the request's.
    assert len(lines) >= 2 and lines[-1]["event"] == "request"
    assert all(line["request_id"] == headers["X-Request-Id"] for line in lines)
