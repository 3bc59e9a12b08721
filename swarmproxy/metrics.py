"""Prometheus metrics, served at `GET /metrics` on the admin listener (prometheus-client).

Counters and histograms are updated where things happen; what describes the cluster at a
moment (each node's status, storage's availability) is read from the cluster at each
scrape. With `[server] workers`, every worker writes its figures to the directory the
supervisor names in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and a
scrape, whichever worker takes it, adds them up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from swarmproxy.workers import MULTIPROCESS_DIR

if TYPE_CHECKING:
    from swarmproxy.cluster import Cluster

CONTENT_TYPE = CONTENT_TYPE_LATEST

# From a ping's fraction of a millisecond to a pull's minutes.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300
)  # fmt: skip
_STORAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)

REQUESTS = Counter(
    "swarmproxy_requests",
    "Docker API requests answered, by endpoint (the route, without the version prefix), "
    "method, status and node",
    ["endpoint", "method", "status", "node"],
)
REQUEST_SECONDS = Histogram(
    "swarmproxy_request_duration_seconds",
    "Time to answer a Docker API request (for a stream: until it ended)",
    ["endpoint", "method"],
    buckets=_LATENCY_BUCKETS,
)
# The labelled children, by their labels: labels() checks and looks them up under a lock at
# every call, a few microseconds of every request. Bounded as prometheus-client's own table
# of them is: by endpoints, methods, statuses and nodes.
_answered: dict[tuple[str, str, str, str], Any] = {}
_timed: dict[tuple[str, str], Any] = {}


def count_request(endpoint: str, method: str, status: str, node: str, took: float) -> None:
    key = (endpoint, method, status, node)
    counter = _answered.get(key)
    if counter is None:
        counter = _answered[key] = REQUESTS.labels(*key)
    counter.inc()
    timed = _timed.get((endpoint, method))
    if timed is None:
        timed = _timed[endpoint, method] = REQUEST_SECONDS.labels(endpoint, method)
    timed.observe(took)


FAST_LANE = Counter(
    "swarmproxy_fast_lane_answers",
    "Docker API requests answered in the fast lane (swarmproxy.api.fast_lane), by endpoint; "
    "each is counted in swarmproxy_requests too",
    ["endpoint"],
)
STREAMED_BYTES = Counter(
    "swarmproxy_streamed_bytes",
    "Bytes streamed through the proxy, towards the client or towards a node",
    ["direction"],
)
HIJACKED = Gauge(
    "swarmproxy_hijacked_connections",
    "Hijacked connections open (attach, exec)",
    multiprocess_mode="livesum",
)
STREAMS = Gauge(
    "swarmproxy_streams",
    "Streamed answers under way (logs, events, stats, export, archives, pulls)",
    multiprocess_mode="livesum",
)
SCHEDULED = Counter(
    "swarmproxy_scheduling_decisions",
    "Containers placed, by the node chosen and the strategy",
    ["node", "strategy"],
)
STORAGE_ERRORS = Counter(
    "swarmproxy_storage_errors", "Storage calls that failed, by operation", ["operation"]
)
STORAGE_SECONDS = Histogram(
    "swarmproxy_storage_call_duration_seconds",
    "Round trip of a storage call to Redis, by operation",
    ["operation"],
    buckets=_STORAGE_BUCKETS,
)

# Counted per chunk on the streaming paths: their label lookups done once.
TO_CLIENT_BYTES = STREAMED_BYTES.labels("to_client")
TO_NODE_BYTES = STREAMED_BYTES.labels("to_node")


class _ClusterState(Collector):
    """What the cluster is now, read at each scrape from the process that takes it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "swarmproxy_node_up", "1 when the node is ready, else 0", labels=["node", "address"]
        )
        status = GaugeMetricFamily(
            "swarmproxy_node_status",
            "The node's status (1 for the one it is in)",
            labels=["node", "status"],
        )
        containers = GaugeMetricFamily(
            "swarmproxy_node_active_containers",
            "Containers created or running on the node, as its events tell",
            labels=["node"],
        )
        for node in self.cluster.nodes:
            up.add_metric([node.name, node.address], 1 if node.ready else 0)
            status.add_metric([node.name, str(node.health.status)], 1)
            containers.add_metric([node.name], node.load.active)
        storage = GaugeMetricFamily(
            "swarmproxy_storage_available", "1 unless storage is in an outage"
        )
        storage.add_metric([], 0 if self.cluster.storage_outage else 1)
        yield from (up, status, containers, storage)


def exposition(cluster: Cluster) -> bytes:
    """The text a scrape gets: every worker's figures added up, and the cluster's state."""
    counted = REGISTRY
    if os.environ.get(MULTIPROCESS_DIR):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    return generate_latest(counted) + generate_latest(_state_registry(cluster))


def _state_registry(cluster: Cluster) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_ClusterState(cluster))
    return registry
