"""What the suite measures, brought up and torn down: dockerd nodes, a redis-server for the
proxy's storage, and swarmproxy processes in front of them (or addresses given on the
command line).

Everything started is registered on an ExitStack at once, so that an error or a Ctrl-C at
any point stops what already runs: proxies first, then redis, then the nodes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis

from bench.wire import host_port
from swarmproxy.local_nodes import DockerNode, free_port, start_nodes, stop_nodes
from tests.rig.proxy import (
    ProxyStartError,
    ServeConfig,
    ServeProcess,
    allow_open_files,
    node_toml,
)

log = logging.getLogger("bench.targets")

NODE_COUNT = 3
PROXY_READY_TIMEOUT = 60.0
REDIS_READY_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
# Enough for the 1 000 held log streams (each is a socket in the harness, two in the proxy,
# one in dockerd) with room to spare; children inherit it.
OPEN_FILES = 65536
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class StartError(RuntimeError):
    pass


def raise_open_files() -> None:
    """Raises this process's limit of open files before any child starts, so that dockerd,
    redis and the proxies inherit it."""
    got = allow_open_files(OPEN_FILES)
    if got < OPEN_FILES:
        log.warning("open files limited to %d, the hard limit", got)


def _stop_process(process: subprocess.Popen[bytes], what: str) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("%s ignored SIGTERM for %.0f s, killing it", what, STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


# -- redis --------------------------------------------------------------------------


class RedisProcess:
    def __init__(self, port: int, workdir: pathlib.Path, process: subprocess.Popen[bytes]):
        self.port = port
        self.workdir = workdir
        self.process = process

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, workdir: pathlib.Path) -> RedisProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        argv = [
            REDIS_SERVER,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(workdir), "--logfile", str(workdir / "redis.log")),
        ]
        with open(workdir / "redis.out", "ab") as out:
            # Its own session: a Ctrl-C reaches the harness, which stops it in order.
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = cls(port, workdir, process)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        log.info("redis-server pid %d on port %d", process.pid, port)
        return server

    def _wait_ready(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        deadline = time.monotonic() + REDIS_READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(redis.RedisError):
                    # Another server that won the race for the port would answer too.
                    if client.info("server").get("process_id") == self.process.pid:
                        return
                time.sleep(0.05)
        finally:
            client.close()
        tail = ""
        for name in ("redis.out", "redis.log"):
            with contextlib.suppress(OSError):
                tail += (self.workdir / name).read_text(errors="replace")[-2000:]
        raise StartError(f"redis-server did not start on port {self.port}:\n{tail}")

    def stop(self) -> None:
        _stop_process(self.process, "redis-server")


# -- swarmproxy ---------------------------------------------------------------------


@dataclass(frozen=True)
class NodeAddress:
    name: str
    address: str


class ProxyProcess(ServeProcess):
    """A proxy this run started (tests/rig/proxy.py launches it), named for the log and the
    report."""

    def __init__(self, name: str, workdir: pathlib.Path, config: ServeConfig) -> None:
        # Its own session: a Ctrl-C reaches the harness, which stops it in order.
        super().__init__(workdir, config, own_session=True)
        self.name = name

    @classmethod
    def start(
        cls,
        name: str,
        workdir: pathlib.Path,
        nodes: list[NodeAddress],
        storage_url: str,
        prefix: str,
        server_toml: str = "",
        reconcile_interval: float = 60.0,
        log_level: str = "info",
    ) -> ProxyProcess:
        """Starts `python -m swarmproxy serve` and waits for it to answer and see its nodes;
        ProxyStartError, with the tail of its log, if it does not."""
        config = ServeConfig(
            name=f"bench-{name}",
            nodes="".join(node_toml(n.name, n.address) for n in nodes),
            storage_url=storage_url,
            prefix=prefix,
            server=server_toml,
            storage=f"reconcile_interval = {reconcile_interval}\n",
            sections=f"[log]\nlevel = {json.dumps(log_level)}\n",
        )
        proxy = cls(name, workdir, config)
        proxy.wait_ready(
            lambda: proxy.answers_ping() and proxy.ready_nodes() >= len(nodes),
            PROXY_READY_TIMEOUT,
        )
        log.info("proxy %s: pid %d on %s", name, proxy.pid, proxy.address)
        return proxy

    def ready_nodes(self) -> int:
        """How many nodes `docker info` says are healthy (classic Swarm's SystemStatus)."""
        status, _, body = self.request("GET", "/info", timeout=5)
        if status != 200:
            return 0
        rows = json.loads(body).get("SystemStatus") or []
        return sum(
            1
            for row in rows
            if len(row) == 2 and row[0].strip() == "└ Status" and row[1] == "ready"
        )

    def problems(self, limit: int = 10) -> tuple[int, list[str]]:
        """How many warning and error lines its log holds, and the last `limit` of them."""
        found: list[str] = []
        try:
            with self.log_path.open(errors="replace") as f:
                for line in f:
                    if "level=warning" in line or "level=error" in line or "Traceback" in line:
                        found.append(line.rstrip())
        except OSError:
            return 0, []
        return len(found), found[-limit:]


# -- the whole set ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One measured target: a node reached directly, or a proxy."""

    label: str
    url: str
    via_proxy: bool
    # The serving process (dockerd, or the proxy with its workers), when this run started it.
    pid: int | None = None

    @property
    def server(self) -> str:
        """What serves it, to name its CPU use."""
        return "swarmproxy" if self.via_proxy else "dockerd"


@dataclass
class LocalCluster:
    """What this run started; extra proxies (for the memory rows) are started through it."""

    stack: contextlib.ExitStack
    workdir: pathlib.Path
    nodes: list[DockerNode]
    redis: RedisProcess
    log_level: str
    proxies: dict[str, ProxyProcess] = field(default_factory=dict)

    @property
    def node_addresses(self) -> list[NodeAddress]:
        return [NodeAddress(n.name, n.tcp_address) for n in self.nodes]

    def start_proxy(
        self,
        name: str,
        prefix: str,
        server_toml: str = "",
        reconcile_interval: float = 60.0,
    ) -> ProxyProcess:
        proxy = ProxyProcess.start(
            name,
            self.workdir / f"proxy-{name}",
            self.node_addresses,
            self.redis.url,
            prefix,
            server_toml=server_toml,
            reconcile_interval=reconcile_interval,
            log_level=self.log_level,
        )
        self.stack.callback(proxy.stop)
        self.proxies[name] = proxy
        return proxy


@dataclass
class Targets:
    direct: Endpoint
    proxy: Endpoint
    # The same cluster served with `[server] workers = 2`; None with the reason why not.
    proxy_workers: Endpoint | None
    workers_skipped: str
    # The direct node's name in the proxy, to pin containers there.
    node_name: str
    api_version: str
    daemon_version: str
    local: LocalCluster | None

    @property
    def endpoints(self) -> list[Endpoint]:
        """Every target the request rows interleave."""
        extra = [self.proxy_workers] if self.proxy_workers is not None else []
        return [self.direct, self.proxy, *extra]


MAIN_PREFIX = "bench:"


def start_local(stack: contextlib.ExitStack, log_level: str) -> LocalCluster:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="spb-", dir="/tmp"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    log.info("starting %d dockerd nodes under %s", NODE_COUNT, workdir)
    nodes = start_nodes(NODE_COUNT, base=workdir / "d")
    stack.callback(stop_nodes, nodes)
    server = RedisProcess.start(workdir / "redis")
    stack.callback(server.stop)
    return LocalCluster(stack, workdir, nodes, server, log_level)


def start_proxies(local: LocalCluster) -> tuple[ProxyProcess, ProxyProcess | None, str]:
    """The main proxy, and the one with two workers (None and why, when it does not start).
    Both serve one index (same prefix), as two deployments of one cluster would."""
    proxy = local.start_proxy("main", MAIN_PREFIX)
    try:
        workers = local.start_proxy("workers2", MAIN_PREFIX, server_toml="workers = 2\n")
    except ProxyStartError as e:
        reason = _start_failure(str(e))
        log.warning("the proxy with [server] workers = 2 did not start: %s", reason)
        return proxy, None, reason
    return proxy, workers, ""


def _start_failure(message: str) -> str:
    """The line of a start failure that says why, for a table note."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return (lines[-1] if lines else message)[:300]


def external_endpoints(proxy_url: str, node_url: str) -> tuple[Endpoint, Endpoint]:
    host_port(proxy_url)
    host_port(node_url)
    return Endpoint("direct", node_url, False), Endpoint("proxy", proxy_url, True)
