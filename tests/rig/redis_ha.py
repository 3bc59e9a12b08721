"""Redis beyond one server, for the tests: a 3-master Redis Cluster and a Sentinel setup.

Everything listens on loopback, on free ports, each process in a directory of its own.
``RedisClusterRig.start(workdir)`` and ``SentinelRig.start(workdir)`` return once the setup
serves; point a storage at ``.url`` and call ``.stop()`` when done (RedisServer's atexit
hook stops whatever a crashed run forgot).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import redis

from .ports import free_port
from .redis import REDIS_SERVER, RedisServer, RedisStartError

__all__ = [
    "REDIS_CLI",
    "ClusterNodeServer",
    "D",
    "Deployment",
    "RedisClusterRig",
    "SentinelRig",
    "SentinelServer",
    "missing_programs",
    "role",
    "running",
]

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

SETUP_TIMEOUT = 30.0


class ClusterNodeServer(RedisServer):
    @classmethod
    def _argv(cls, port: int, workdir: pathlib.Path) -> list[str]:
        # The bus port is chosen, not derived (port + 10000 may be taken or out of range).
        return [
            *super()._argv(port, workdir),
            *("--cluster-enabled", "yes"),
            *("--cluster-config-file", str(workdir / "nodes.conf")),
            *("--cluster-node-timeout", "5000"),
            *("--cluster-port", str(free_port())),
        ]


class SentinelServer(RedisServer):
    @classmethod
    def _argv(cls, port: int, workdir: pathlib.Path) -> list[str]:
        # A sentinel needs a config file of its own, named first: it rewrites it to keep
        # its state.
        config = workdir / "sentinel.conf"
        config.touch()
        program, *options = super()._argv(port, workdir)
        return [program, str(config), "--sentinel", *options]


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2.0)


def _wait_for(what: str, check: Callable[[], bool], timeout: float = SETUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RedisStartError(f"{what} not reached after {timeout:.0f}s")
        time.sleep(0.05)


def _stop_all(servers: list[RedisServer]) -> None:
    for server in servers:
        server.stop()


class RedisClusterRig:
    """Three masters sharing the 16384 slots, no replicas."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes) + "/"

    @classmethod
    def start(cls, workdir: pathlib.Path, masters: int = 3) -> RedisClusterRig:
        nodes: list[RedisServer] = []
        try:
            for i in range(masters):
                nodes.append(ClusterNodeServer.start(workdir / f"node-{i + 1}"))
            rig = cls(nodes)
            rig._create()
        except BaseException:
            _stop_all(nodes)
            raise
        return rig

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *addresses,
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RedisStartError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        for node in self.nodes:
            _wait_for(f"cluster_state:ok on port {node.port}", lambda n=node: self._ok(n.port))

    def _ok(self, port: int) -> bool:
        with _client(port) as client:
            info = client.cluster("INFO")
        return bool(
            info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(self.nodes)
        )

    def stop(self) -> None:
        _stop_all(self.nodes)


class SentinelRig:
    """A master, one replica and one sentinel (quorum 1) watching them as ``mymaster``."""

    master_name = "mymaster"
    # A killed master is declared down after this long (milliseconds).
    down_after = 1000

    def __init__(self, data: list[RedisServer], sentinel: RedisServer) -> None:
        # The two data servers, master first as started; failovers swap their roles.
        self.data = data
        self.sentinel = sentinel

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.master_name}/0"

    @classmethod
    def start(cls, workdir: pathlib.Path) -> SentinelRig:
        servers: list[RedisServer] = []
        try:
            servers.append(RedisServer.start(workdir / "master"))
            servers.append(RedisServer.start(workdir / "replica"))
            master, replica = servers
            with _client(master.port) as client:
                # Diskless sync waits 5 s by default for more replicas to join in.
                client.config_set("repl-diskless-sync-delay", 0)
            with _client(replica.port) as client:
                client.replicaof("127.0.0.1", master.port)
            _wait_for("replication link up", lambda: _link_up(replica.port))
            servers.append(SentinelServer.start(workdir / "sentinel"))
            rig = cls(servers[:2], servers[2])
            rig._monitor(master.port)
        except BaseException:
            _stop_all(servers)
            raise
        return rig

    def _monitor(self, master_port: int) -> None:
        with self.sentinel_client() as client:
            client.sentinel_monitor(self.master_name, "127.0.0.1", master_port, 1)
            client.sentinel_set(self.master_name, "down-after-milliseconds", self.down_after)
            client.sentinel_set(self.master_name, "failover-timeout", 10000)
        # A failover needs a replica the sentinel has seen; it learns of it from the master.
        _wait_for("the sentinel to know the replica", self._replica_known)

    def _replica_known(self) -> bool:
        with self.sentinel_client() as client:
            replicas = client.sentinel_slaves(self.master_name)
        return any(
            r["is_slave"] and not r["is_disconnected"] and r["master-link-status"] == "ok"
            for r in replicas
        )

    def sentinel_client(self) -> redis.Redis:
        return _client(self.sentinel.port)

    def master_port(self) -> int:
        """The master's port as the sentinel now names it."""
        with self.sentinel_client() as client:
            _, port = client.sentinel_get_master_addr_by_name(self.master_name)
        return int(port)

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.data if s.port == port)

    def failover(self) -> None:
        """Ask the sentinel for a switch now; returns at once, the switch takes a moment."""
        with self.sentinel_client() as client:
            client.sentinel_failover(self.master_name)

    def stop(self) -> None:
        _stop_all([self.sentinel, *self.data])


class Deployment(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


D = TypeVar("D", bound=Deployment)


def missing_programs() -> list[str]:
    """The programs these setups need that this machine lacks."""
    return [p for p in (REDIS_SERVER, REDIS_CLI) if not os.access(p, os.X_OK)]


@contextlib.contextmanager
def running(start: Callable[[pathlib.Path], D], workdir: pathlib.Path) -> Iterator[D]:
    """A deployment (a RedisServer, a cluster, a sentinel setup) up for the block's span."""
    deployment = start(workdir)
    try:
        yield deployment
    finally:
        deployment.stop()


def role(port: int) -> str:
    """``master`` or ``slave``, as the server on `port` says of itself."""
    with _client(port) as client:
        return str(client.role()[0])


def _link_up(port: int) -> bool:
    with _client(port) as client:
        return client.info("replication").get("master_link_status") == "up"
