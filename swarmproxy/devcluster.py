"""`swarmproxy dev-cluster`: local dockerd nodes and a proxy in front of them, for a quick start."""

from __future__ import annotations

import logging
import pathlib
import sys

from swarmproxy import log
from swarmproxy.config import AdminConfig, Config, NodeConfig, ServerConfig, StorageConfig
from swarmproxy.local_nodes import start_nodes, stop_nodes
from swarmproxy.log import log_event

logger = logging.getLogger("swarmproxy.devcluster")


def run_dev_cluster(
    count: int, listen: str, storage_url: str, workdir: str | None, admin: str = ""
) -> int:
    log.setup()
    log_event(logger, logging.INFO, "starting nodes", count=count)
    nodes = start_nodes(count, base=pathlib.Path(workdir) if workdir else None)
    try:
        config = Config(
            server=ServerConfig(listen=[listen], name="dev-cluster"),
            admin=AdminConfig(listen=[admin] if admin else []),
            storage=StorageConfig(url=storage_url),
            nodes=[NodeConfig(address=n.tcp_address, name=n.name) for n in nodes],
        )
        for node in nodes:
            log_event(
                logger,
                logging.INFO,
                "node started",
                node=node.name,
                addr=node.tcp_address,
                data=str(node.workdir),
            )
        # The one line a user needs, on stdout so that it can be captured.
        sys.stdout.write(f"export DOCKER_HOST={listen}\n")
        sys.stdout.flush()
        from swarmproxy.api.app import serve
        from swarmproxy.cli import run

        run(serve(config))
    finally:
        log_event(logger, logging.INFO, "stopping nodes", count=len(nodes))
        stop_nodes(nodes)
    return 0
