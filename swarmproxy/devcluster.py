"""`swarmproxy dev-cluster`: local dockerd nodes and a proxy in front of them, for a quick start."""

from __future__ import annotations

import logging
import pathlib
import sys

from swarmproxy import config as config_module
from swarmproxy import local_nodes, log
from swarmproxy.config import Config, NodeConfig
from swarmproxy.local_nodes import DockerNode, start_nodes, stop_nodes
from swarmproxy.log import log_event

logger = logging.getLogger("swarmproxy.devcluster")


def dev_config(listen: str, storage_url: str, admin: str) -> Config:
    """The proxy's config, all but its nodes: checked before any node starts, so that a bad
    flag costs no daemon."""
    return config_module.from_dict(
        {
            "server": {"listen": [listen], "name": "dev-cluster"},
            "admin": {"listen": [admin] if admin else []},
            "storage": {"url": storage_url},
        }
    )


def run_dev_cluster(config: Config, count: int, workdir: str | None) -> int:
    nodes = _start_nodes(count, pathlib.Path(workdir) if workdir else None)
    log.setup()
    try:
        config.nodes = [NodeConfig(address=n.tcp_address, name=n.name) for n in nodes]
        # The one line a user needs, on stdout so that it can be captured.
        sys.stdout.write(f"export DOCKER_HOST={config.server.listen[0]}\n")
        sys.stdout.flush()
        from swarmproxy.api.app import serve
        from swarmproxy.cli import run

        run(serve(config))
    finally:
        log_event(logger, logging.INFO, "stopping nodes", count=len(nodes))
        stop_nodes(nodes)
    return 0


def _start_nodes(count: int, base: pathlib.Path | None) -> list[DockerNode]:
    """start_nodes, with what it tells of each node (started, ready, image loaded) shown on
    stderr as plain lines while it runs: the proxy's structured log begins when it serves."""
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(logging.Formatter("%(message)s"))
    nodes_log = logging.getLogger(local_nodes.__name__)
    nodes_log.addHandler(progress)
    nodes_log.setLevel(logging.INFO)
    try:
        return start_nodes(count, base=base)
    finally:
        nodes_log.removeHandler(progress)
