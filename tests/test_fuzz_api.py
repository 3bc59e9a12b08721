"""The Engine API v1.41 spec, fuzzed through the proxy with schemathesis: valid and invalid
requests for every operation the spec describes. The proxy must never make a 5xx of its
own (a node's 5xx passed on is the daemon's answer, not the proxy's: the proxy marks its
own errors with X-Swarmproxy-Error) and must still be alive and answering afterwards.

It runs every operation, destructive ones included, against a proxy and two nodes of its
own, so that a prune or an image removal cannot break other tests. Left out are the
operations that would make a node reach beyond this machine (pull, push, search, login,
build with its remote contexts, import from a URL), that would change the host's network
(network create makes bridges on the host), or that stream until the client leaves
(events). A create's image is pinned to busybox's ID: a missing image is pulled otherwise.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from swarmproxy.local_nodes import DockerNode, start_nodes, stop_nodes
from tests.rig.proxy import Proxy

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")
requests = pytest.importorskip("requests")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# Beside the repository, as in the project's workspace; a clone of its own has none.
SPEC = pathlib.Path(__file__).resolve().parents[2] / "shared/docker-engine-api/v1.41.yaml"
EXAMPLES = 8
# Seconds for the whole run; what is left over is skipped (and said so in the output).
BUDGET = 75.0
REQUEST_TIMEOUT = 10.0
STREAM_SECONDS = 1.0
# Seconds one operation may take in one mode: a slow one must not starve the others.
PER_OPERATION = 2.0
EXCLUDED = {
    "ImageCreate",
    "ImagePush",
    "ImageSearch",
    "SystemAuth",
    "ImageBuild",
    "NetworkCreate",
    "SystemEvents",
    "PluginPull",
    "PluginUpgrade",
    "GetPluginPrivileges",
    "DistributionInspect",
    "SwarmJoin",
}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, str]]:
    """A proxy over two throwaway nodes, and busybox's image ID."""
    if not SPEC.is_file():
        pytest.skip(f"the Engine API spec is not at {SPEC} (it lives in the workspace's shared/)")
    nodes: list[DockerNode] = start_nodes(2)
    proxy: Proxy | None = None
    try:
        proxy = Proxy.start(tmp_path_factory.mktemp("fuzz"), nodes)
        status, inspect = proxy.json("GET", "/images/busybox:latest/json")
        assert status == 200, inspect
        yield proxy, inspect["Id"]
    finally:
        if proxy is not None:
            proxy.stop()
        stop_nodes(nodes)


def _pinned(case: Any, image_id: str) -> None:
    """A create never sends a node to a registry: its image is one every node has."""
    if case.operation.definition.raw.get("operationId") == "ContainerCreate" and isinstance(
        case.body, dict
    ):
        case.body["Image"] = image_id


def _raw_bytes(_context: Any, value: Any) -> bytes:
    """A tar body (image load, archive upload) as generated: whatever bytes, not a tar."""
    return value if isinstance(value, bytes) else str(value).encode()


def _beginning(response: Any) -> str:
    """The start of an answer, read for a few seconds at most: stats, logs and attach on a
    running container stream for as long as the client stays."""
    started = time.monotonic()
    body = b""
    try:
        for chunk in response.iter_content(4096):
            body += chunk
            if len(body) > 300 or time.monotonic() - started > STREAM_SECONDS:
                break
    except requests.ConnectionError as e:
        # A wait on a running container: its status came at once, its end is the node's.
        if "Read timed out" not in str(e):
            raise
    finally:
        response.close()
    return body[:300].decode(errors="replace")


class Fuzzer:
    """Sends the cases of each operation to the proxy, and keeps what it answered."""

    def __init__(self, proxy: Proxy, image_id: str) -> None:
        self.base_url = f"http://127.0.0.1:{proxy.port}/v1.41"
        self.image_id = image_id
        self.session = requests.Session()
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []

    def run(self, operation: Any, mode: Any, until: float) -> None:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis.errors import Unsatisfiable

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            if time.monotonic() < until:
                self.send(case)

        # Unsatisfiable: nothing invalid to make of it (an operation without parameters).
        with contextlib.suppress(Unsatisfiable):
            call()

    def send(self, case: Any) -> None:
        _pinned(case, self.image_id)
        what = f"{case.method} {case.formatted_path}"
        try:
            response = self.session.request(
                **case.as_transport_kwargs(base_url=self.base_url),
                timeout=REQUEST_TIMEOUT,
                stream=True,
            )
            text = _beginning(response)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL):
            return  # not sendable: refused by the client library itself
        except requests.Timeout:
            return  # a call that waits (a node's own time): not an error
        except requests.RequestException as e:
            self.failures.append(f"{what}: no answer: {e}")
            return
        self.statuses[response.status_code] += 1
        if response.status_code >= 500 and "X-Swarmproxy-Error" in response.headers:
            self.failures.append(f"{what}: {response.status_code} {text}")


def test_the_v1_41_spec_through_the_proxy(fuzzed: tuple[Proxy, str]) -> None:
    proxy, image_id = fuzzed
    from schemathesis import GenerationMode

    schemathesis.serializer("application/x-tar")(_raw_bytes)
    schema = schemathesis.openapi.from_path(SPEC)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.definition.raw.get("operationId") not in EXCLUDED]
    fuzzer = Fuzzer(proxy, image_id)
    deadline = time.monotonic() + BUDGET
    skipped: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:
            if time.monotonic() > deadline:
                skipped.append(f"{mode.value} {operation.method.upper()} {operation.path}")
                continue
            fuzzer.run(operation, mode, min(deadline, time.monotonic() + PER_OPERATION))

    print(f"fuzz: {len(operations)} operations; answers: {sorted(fuzzer.statuses.items())}")
    print(f"fuzz: skipped for time: {skipped or 'none'}")
    assert proxy.process.poll() is None, proxy.log_tail()
    assert proxy.request("GET", "/_ping")[2] == b"OK"
    assert not fuzzer.failures, "\n".join(fuzzer.failures[:30])
