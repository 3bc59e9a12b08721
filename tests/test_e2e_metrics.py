"""`GET /metrics` on the admin listener: Prometheus text whose figures move with real
traffic through the proxy, on one process and added up over workers."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmproxy.local_nodes import DockerNode
from tests.rig.proxy import ADMIN_TOKEN, Proxy
from tests.rig.redis import RedisServer
from tests.rig.waiting import wait_for
from tests.test_e2e_workers import settle_health

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(proxy: Proxy, token: str = ADMIN_TOKEN) -> tuple[int, str, Samples]:
    host, _, port = proxy.admin_address.removeprefix("tcp://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        text = response.read().decode()
        kind = response.getheader("Content-Type", "")
    finally:
        connection.close()
    if response.status != 200:
        return response.status, kind, {}
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return response.status, kind, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_metrics_move_with_traffic(cluster: Proxy, nodes: list[DockerNode]) -> None:
    status, kind, before = scrape(cluster)
    assert status == 200 and kind.startswith("text/plain")
    cluster.docker("run", "--name", "counted", "busybox", "sh", "-c", "echo hi; echo there")
    assert cluster.docker("logs", "counted").stdout == "hi\nthere\n"
    cluster.docker("ps", "-a")
    _, _, after = scrape(cluster)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    created = "swarmproxy_requests_total"
    assert grew(created, endpoint="/containers/create", method="POST", status="201") == 1
    assert grew(created, endpoint="/containers/json", method="GET", status="200") >= 1
    assert grew(created, endpoint="/containers/{id}/logs", method="GET", status="200") == 1
    on_nodes = {
        dict(labels)["node"]
        for (name, labels), value in after.items()
        if name == created and dict(labels).get("endpoint") == "/containers/{id}/start"
    }
    assert on_nodes <= {n.name for n in nodes} and on_nodes
    assert grew("swarmproxy_request_duration_seconds_count", endpoint="/containers/create") == 1
    assert grew("swarmproxy_streamed_bytes_total", direction="to_client") >= len("hi\nthere\n")
    assert grew("swarmproxy_scheduling_decisions_total") == 1
    for node in nodes:
        assert total(after, "swarmproxy_node_up", node=node.name) == 1
        assert total(after, "swarmproxy_node_status", node=node.name, status="ready") == 1
    assert total(after, "swarmproxy_storage_available") == 1
    assert total(after, "swarmproxy_hijacked_connections") == 0


def test_storage_round_trips_are_measured(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Proxy.start(
        tmp_path_factory.mktemp("metrics-redis"),
        nodes,
        redis_server.url,
        prefix=f"sp-{uuid.uuid4().hex[:8]}:",
    )
    try:
        container_id = proxy.docker("create", "busybox", "true").stdout.strip()
        proxy.docker("rm", container_id)
        _, _, samples = scrape(proxy)
        count = "swarmproxy_storage_call_duration_seconds_count"
        assert total(samples, count, operation="store_container") >= 1
        assert total(samples, count, operation="remove_container") >= 1
        assert total(samples, "swarmproxy_storage_errors_total") == 0
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def workers(
    nodes: list[DockerNode], redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    proxy = Proxy.start(
        tmp_path_factory.mktemp("metrics-workers"),
        nodes,
        redis_server.url,
        prefix=f"sp-{uuid.uuid4().hex[:8]}:",
        server_toml="workers = 2\n",
    )
    try:
        settle_health()
        yield proxy
    finally:
        proxy.stop()


def test_any_worker_answers_with_every_workers_figures(workers: Proxy) -> None:
    def pings() -> float:
        _, _, samples = scrape(workers)
        return total(samples, "swarmproxy_requests_total", endpoint="/_ping", method="GET")

    wait_for(lambda: scrape(workers)[0] == 200, timeout=15)
    before = pings()
    # A connection each: the kernel spreads them over both workers.
    for _ in range(40):
        assert workers.request("GET", "/_ping")[0] == 200
    # Whichever worker takes a scrape, it counts every worker's pings.
    for _ in range(6):
        assert pings() - before == 40


def test_metrics_need_the_admin_token(cluster: Proxy) -> None:
    assert scrape(cluster, token="wrong")[0] == 401
