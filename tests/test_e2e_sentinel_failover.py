"""A Sentinel failover during a run of named creates loses no container: what the old
master took and dropped at its demotion is learned again from the nodes."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Iterator

import pytest

from swarmproxy.local_nodes import DockerNode
from tests.rig.index import index_names
from tests.rig.proxy import Proxy
from tests.rig.redis_ha import SentinelRig, missing_programs, running
from tests.rig.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRig]:
    if missing := missing_programs():
        pytest.skip(f"{', '.join(missing)} not installed")
    with running(SentinelRig.start, tmp_path_factory.mktemp("sentinel")) as rig:
        yield rig


def test_a_failover_during_creates_loses_no_container(
    nodes: list[DockerNode], sentinel: SentinelRig, tmp_path: pathlib.Path
) -> None:
    prefix = "sp-failover:"
    proxy = Proxy.start(
        tmp_path, nodes[:2], sentinel.url, prefix, storage_toml="reconcile_interval = 2.0\n"
    )
    try:
        old_master = sentinel.master_port()
        failing = threading.Timer(1.0, sentinel.failover)
        failing.start()
        deadline = time.monotonic() + 15
        i = 0
        while time.monotonic() < deadline:
            # A create may be refused while the master changes (its name cannot be
            # reserved then); none may be lost once made.
            proxy.docker("create", "--name", f"fo-{i}", "busybox", "true", check=False)
            i += 1
        failing.join()
        assert sentinel.master_port() != old_master

        made: dict[str, str] = {}
        for node in nodes[:2]:
            listed = node.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
            for line in listed.stdout.splitlines():
                container_id, name = line.split()
                if name.startswith("fo-"):
                    made[name] = container_id
        assert len(made) > 10
        wait_for(lambda: index_names(sentinel.url, prefix, list(made)) == made, timeout=40)
        for name, container_id in made.items():
            assert json.loads(proxy.docker("inspect", name).stdout)[0]["Id"] == container_id
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()
