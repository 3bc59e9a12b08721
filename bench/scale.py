"""The scale benchmark, BY SIMULATION: swarmproxy in front of 10, 100 and 1000 SIMULATED
Docker nodes (bench/sim.py), since one machine cannot run that many real daemons.

For each cluster size one simulator process serves the nodes, and two figures are taken:

- the scheduling decision: the cluster core as a library (in this process), joined to
  every simulated node, timed around `Cluster.schedule()`: the candidates, the filters,
  the soft image preference, the strategy and the `before_container_create` hooks; no
  create reaches a node. With the default strategy (round-robin) and with spread.
- `docker ps -a` (`GET /containers/json?all=1`) through a real `swarmproxy serve`
  subprocess on the embedded storage, once it has seen every simulated node ready and
  has reconciled its index with them. Beside it, what the simulated nodes alone cost for
  the same listing fan-out (no proxy), and the CPU the proxy and the simulator spend.

`measure_scale(quick)` returns the rows; `python -m bench.scale [--quick]` prints them.
With `BENCH_PROFILE_DIR` set, each proxy is sampled with py-spy while `ps` is measured
through it (raw collapsed stacks, `ps-N.txt` in that directory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from bench.sim import raise_nofile_limit
from bench.wire import http_url
from swarmproxy.cluster import Cluster, Node
from swarmproxy.scheduler import SchedulingRequest, make_scheduler
from swarmproxy.storage import MemoryStorage
from tests.rig.proxy import ServeConfig, ServeProcess, node_toml

log = logging.getLogger("bench.scale")

SIZES = (10, 100, 1000)
QUICK_SIZES = (10, 100)
# Containers on each simulated node: `ps -a` lists N times this many.
CONTAINERS_PER_NODE = 4
LATENCY_MS = (0.2, 1.0)
STRATEGIES = ("round-robin", "spread")
DECISIONS = {False: 2000, True: 300}
PS_SAMPLES = {False: 200, True: 40}
# Each listing at 1000 nodes is 1000 node calls: fewer of them.
PS_SAMPLES_LARGE = {False: 100, True: 20}
WARMUP = 10
DECISION_TARGET_MS = 1.0
PS_RATIO_TARGET = 2.0
# The size the ps target applies to, against the smallest size.
PS_JUDGED_SIZE = 100
REPO = Path(__file__).resolve().parent.parent
# What a placement is asked for: a plain `docker run busybox sleep 60`.
CREATE_BODY: dict[str, Any] = {
    "Image": "busybox:latest",
    "Cmd": ["sleep", "60"],
    "HostConfig": {"NetworkMode": "default"},
}


@dataclass
class Spread:
    p50: float
    p99: float
    samples: int


def _spread(values: list[float]) -> Spread:
    ordered = sorted(values)
    # Nearest rank: the p99 is a value that was really measured.
    rank = max(1, math.ceil(0.99 * len(ordered)))
    return Spread(statistics.median(ordered), ordered[rank - 1], len(ordered))


def _row(
    row: str,
    metric: str,
    direct: float | None,
    proxy: float,
    unit: str,
    target: str,
    met: bool | None,
    note: str,
) -> dict[str, Any]:
    return {
        "row": row,
        "metric": metric,
        "direct": None if direct is None else round(direct, 4),
        "proxy": round(proxy, 4),
        "unit": unit,
        "target": target,
        "met": met,
        "note": note,
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    # The command name may hold spaces; the fields after it may not.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stop(process: asyncio.subprocess.Process, what: str, grace: float = 15.0) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        log.warning("killed after SIGTERM was ignored", extra={"fields": {"process": what}})
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@dataclass
class _Simulator:
    nodes: list[dict[str, str]]
    pid: int


@contextlib.asynccontextmanager
async def _simulator(size: int, log_file: IO[bytes]) -> AsyncIterator[_Simulator]:
    """A `python -m bench.sim` process serving `size` simulated nodes. Its own process,
    so that serving the nodes shares no event loop with what is timed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sim",
        "--nodes",
        str(size),
        "--containers",
        str(CONTAINERS_PER_NODE),
        "--latency-ms",
        f"{LATENCY_MS[0]}:{LATENCY_MS[1]}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
        # The ready line lists every node, ~70 bytes each.
        limit=1 << 22,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60 + size / 20)
        if not line:
            raise RuntimeError(f"the simulator exited ({await process.wait()}) before serving")
        yield _Simulator(list(json.loads(line)["nodes"]), process.pid)
    finally:
        await _stop(process, "simulator")


# --- scheduling decisions, the cluster core as a library ---------------------------------


class _Reconciled(logging.Handler):
    """Set once the cluster logs its first reconciliation: until then a join's background
    work (listings, inspects, image learning) competes with what is timed."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.done = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "index reconciled":
            self.done.set()


@contextlib.contextmanager
def _levels(levels: dict[str, int]) -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@dataclass
class _Decisions:
    spread: Spread
    # Nodes the soft image preference kept (all of them hold the image).
    preferred: int
    # Nodes the timed decisions went to.
    chosen: int


async def _decisions(nodes: list[dict[str, str]], strategy: str, count: int) -> _Decisions:
    """Milliseconds per scheduling decision over a cluster joined to every simulated node."""
    cluster = Cluster(
        [Node(n["name"], n["address"]) for n in nodes], MemoryStorage(), make_scheduler(strategy)
    )
    reconciled = _Reconciled()
    reconcile_log = logging.getLogger("swarmproxy.reconcile")
    reconcile_log.addHandler(reconciled)
    # The reconciliation's line is the signal; a placement's INFO line per decision would
    # time a log handler rather than the decision.
    quiet = {"swarmproxy": logging.WARNING, "swarmproxy.reconcile": logging.INFO}
    try:
        with _levels(quiet):
            await cluster.start()
            await asyncio.wait_for(reconciled.done.wait(), 60 + len(nodes) / 10)
            ready = len(cluster.ready_nodes())
            if ready != len(nodes):
                raise RuntimeError(f"only {ready} of {len(nodes)} simulated nodes are ready")
            request = SchedulingRequest(config=CREATE_BODY)
            dry = await cluster.place(request)
            preferred = sum(1 for v in dry.verdicts if not v.excluded_by and not v.unpreferred)
            for _ in range(WARMUP):
                await cluster.schedule(request)
            samples, chosen = [], Counter[str]()
            for _ in range(count):
                started = time.perf_counter()
                node = await cluster.schedule(request)
                samples.append((time.perf_counter() - started) * 1000)
                chosen[node.name] += 1
    finally:
        reconcile_log.removeHandler(reconciled)
        await cluster.close()
    return _Decisions(_spread(samples), preferred, len(chosen))


async def _scheduling_rows(size: int, sim: _Simulator, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for strategy in STRATEGIES:
        result = await _decisions(sim.nodes, strategy, DECISIONS[quick])
        log.info(
            "scheduling measured",
            extra={
                "fields": {
                    "nodes": size,
                    "strategy": strategy,
                    "p50_ms": round(result.spread.p50, 3),
                    "p99_ms": round(result.spread.p99, 3),
                    "preferred": result.preferred,
                    "chosen": result.chosen,
                }
            },
        )
        name = f"scheduling decision, {size} simulated nodes ({strategy})"
        note = (
            f"{result.spread.samples} decisions timed around Cluster.schedule() in process "
            "(5 filters, image preference, strategy, hooks; nothing created; swarmproxy "
            f"logging at WARNING); every node holds the image, the preference kept "
            f"{result.preferred} of {size}; decisions went to {result.chosen} distinct nodes"
        )
        for metric, value in (("p50 ms", result.spread.p50), ("p99 ms", result.spread.p99)):
            met = value < DECISION_TARGET_MS
            rows.append(
                _row(name, metric, None, value, "ms", f"< {DECISION_TARGET_MS:g} ms", met, note)
            )
    return rows


# --- ps -a through a real proxy process --------------------------------------------------


def _proxy(workdir: Path, nodes: list[dict[str, str]]) -> ServeProcess:
    """A `swarmproxy serve` on the embedded storage in front of the simulated nodes."""
    config = ServeConfig(
        name="swarmproxy-scale-bench",
        nodes="".join(node_toml(n["name"], n["address"]) for n in nodes),
        server="shutdown_timeout = 2.0\n",
        sections='[log]\nlevel = "info"\n',
    )
    return ServeProcess(workdir, config)


async def _ready_nodes(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/v1.41/info") as response:
        if response.status != 200:
            return 0
        info = await response.json()
    return sum(
        1
        for key, value in info.get("SystemStatus") or []
        if key.strip() == "└ Status" and value == "ready"
    )


async def _wait_ready(
    session: aiohttp.ClientSession, proxy: ServeProcess, size: int
) -> tuple[float, float]:
    """Seconds from spawn until the proxy shows every node ready, and until its first
    reconciliation of the index with them has finished."""
    deadline = time.monotonic() + 120 + size / 5
    ready_at = None
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"swarmproxy exited ({proxy.process.returncode}); see its log")
        if ready_at is None:
            with contextlib.suppress(aiohttp.ClientError):
                if await _ready_nodes(session, http_url(proxy.address)) == size:
                    ready_at = time.monotonic()
        if ready_at is not None and "index reconciled" in proxy.log_path.read_text(
            errors="replace"
        ):
            return ready_at - proxy.started, time.monotonic() - proxy.started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"swarmproxy did not see {size} simulated nodes ready and reconciled")


async def _list_all(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.get(f"{url}/v1.41/containers/json?all=1") as response:
        body = await response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"ps answered {response.status}: {body[:200]!r}")
    return elapsed, len(json.loads(body))


async def _fan_out_direct(nodes: list[dict[str, str]], samples: int) -> Spread:
    """Every simulated node's `GET /containers/json?all=1` at once, straight from one
    aiohttp client, decoded: what the listing fan-out costs without the proxy. One process
    serving N nodes is not N daemons answering in parallel: this is the share of a `ps`
    through the proxy that the simulation itself accounts for."""
    urls = [
        node["address"].replace("tcp://", "http://", 1) + "/v1.41/containers/json?all=1"
        for node in nodes
    ]
    # aiohttp's default pool caps a session at 100 connections; the proxy's has no cap.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(url: str) -> int:
            async with session.get(url) as response:
                return len(json.loads(await response.read()))

        times = []
        for i in range(WARMUP + samples):
            started = time.perf_counter()
            await asyncio.gather(*(one(url) for url in urls))
            if i >= WARMUP:
                times.append((time.perf_counter() - started) * 1000)
    return _spread(times)


@contextlib.asynccontextmanager
async def _profiled(pid: int, output: Path | None) -> AsyncIterator[None]:
    """py-spy sampling `pid` meanwhile, when asked for and installed."""
    spy = shutil.which("py-spy")
    if output is None or spy is None:
        yield
        return
    process = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # py-spy needs a moment to attach before what it should see begins.
        await asyncio.sleep(1.0)
        yield
    finally:
        # SIGINT makes py-spy write what it sampled.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class _PsResult:
    spread: Spread
    fan_out: Spread
    listed: int
    ready_s: float
    reconciled_s: float
    # CPU milliseconds per listing, background work during the loop included.
    proxy_cpu_ms: float
    sim_cpu_ms: float


async def _ps(size: int, sim: _Simulator, samples: int, workdir: Path) -> _PsResult:
    profile_dir = os.environ.get("BENCH_PROFILE_DIR")
    profile = Path(profile_dir) / f"ps-{size}.txt" if profile_dir else None
    fan_out = await _fan_out_direct(sim.nodes, samples)
    with _proxy(workdir / f"proxy-{size}", sim.nodes) as proxy:
        url = http_url(proxy.address)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            ready_s, reconciled_s = await _wait_ready(session, proxy, size)
            for _ in range(WARMUP):
                await _list_all(session, url)
            times, listed = [], 0
            async with _profiled(proxy.pid, profile):
                proxy_cpu, sim_cpu = _cpu_seconds(proxy.pid), _cpu_seconds(sim.pid)
                for _ in range(samples):
                    elapsed, listed = await _list_all(session, url)
                    times.append(elapsed)
                proxy_cpu = _cpu_seconds(proxy.pid) - proxy_cpu
                sim_cpu = _cpu_seconds(sim.pid) - sim_cpu
    result = _PsResult(
        _spread(times),
        fan_out,
        listed,
        ready_s,
        reconciled_s,
        1000 * proxy_cpu / samples,
        1000 * sim_cpu / samples,
    )
    log.info(
        "ps measured",
        extra={
            "fields": {
                "nodes": size,
                "p50_ms": round(result.spread.p50, 2),
                "p99_ms": round(result.spread.p99, 2),
                "fan_out_p50_ms": round(fan_out.p50, 2),
                "proxy_cpu_ms": round(result.proxy_cpu_ms, 2),
                "sim_cpu_ms": round(result.sim_cpu_ms, 2),
                "listed": listed,
                "ready_s": round(ready_s, 2),
            }
        },
    )
    if listed != size * CONTAINERS_PER_NODE:
        log.warning(
            "ps listed another number of containers than the simulated nodes hold",
            extra={"fields": {"listed": listed, "expected": size * CONTAINERS_PER_NODE}},
        )
    return result


def _ps_rows(results: dict[int, _PsResult]) -> list[dict[str, Any]]:
    rows = []
    smallest = min(results)
    base = results[smallest]
    for size, result in sorted(results.items()):
        name = f"ps -a through the proxy, {size} simulated nodes x {CONTAINERS_PER_NODE} containers"
        detail = (
            f"{result.listed} containers listed, {result.spread.samples} sequential calls; "
            f"CPU per call: proxy {result.proxy_cpu_ms:.1f} ms, simulator "
            f"{result.sim_cpu_ms:.1f} ms; the simulated nodes alone (all {size} listed at "
            f"once from one client, no proxy): p50 {result.fan_out.p50:.1f} ms, p99 "
            f"{result.fan_out.p99:.1f} ms"
        )
        for metric, value, baseline in (
            ("p50 ms", result.spread.p50, base.spread.p50),
            ("p99 ms", result.spread.p99, base.spread.p99),
        ):
            if size == smallest:
                rows.append(_row(name, metric, None, value, "ms", "baseline", None, detail))
                continue
            ratio = value / baseline if baseline else math.inf
            judged = size == PS_JUDGED_SIZE
            target = f"≤ {PS_RATIO_TARGET:g}x {smallest} nodes" if judged else "none"
            met = ratio <= PS_RATIO_TARGET if judged else None
            note = f"{ratio:.2f}x the {smallest}-node {metric.split()[0]}; {detail}"
            rows.append(_row(name, metric, baseline, value, "ms", target, met, note))
        rows.append(
            _row(
                f"proxy start until every node is ready, {size} simulated nodes",
                "seconds",
                None,
                result.ready_s,
                "s",
                "none",
                None,
                f"spawn to /info showing {size} nodes ready; its first reconciliation of "
                f"the index with them done at {result.reconciled_s:.1f} s",
            )
        )
    return rows


def _log_tails(workdir: Path, size: int) -> None:
    # The logs go with the temporary directory: their ends are kept in this one.
    for name in (f"proxy-{size}/proxy.log", f"sim-{size}.log"):
        path = workdir / name
        if path.exists():
            log.error("%s (end)\n%s", name, path.read_text(errors="replace")[-3000:])


async def measure_scale(quick: bool) -> list[dict[str, Any]]:
    """The scale rows: scheduling decisions and `ps -a` at 10, 100 and 1000 simulated
    nodes (10 and 100 when `quick`, with fewer samples)."""
    sizes = QUICK_SIZES if quick else SIZES
    limit = raise_nofile_limit()
    log.info("open-file limit", extra={"fields": {"nofile": limit}})
    scheduling: list[dict[str, Any]] = []
    results: dict[int, _PsResult] = {}
    with tempfile.TemporaryDirectory(prefix="swarmproxy-scale-") as tmp:
        workdir = Path(tmp)
        for size in sizes:
            samples = (PS_SAMPLES_LARGE if size >= 1000 else PS_SAMPLES)[quick]
            try:
                with (workdir / f"sim-{size}.log").open("wb") as sim_log:
                    async with _simulator(size, sim_log) as sim:
                        scheduling += await _scheduling_rows(size, sim, quick)
                        results[size] = await _ps(size, sim, samples, workdir)
            except BaseException:
                _log_tails(workdir, size)
                raise
    return scheduling + _ps_rows(results)


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("row", "metric", "direct", "proxy", "unit", "target", "met")
    cells = [
        [
            str(r["row"]),
            str(r["metric"]),
            "" if r["direct"] is None else f"{r['direct']:.3f}",
            f"{r['proxy']:.3f}",
            str(r["unit"]),
            str(r["target"]),
            {True: "yes", False: "NO", None: "-"}[r["met"]],
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="swarmproxy at 10/100/1000 SIMULATED nodes: scheduling and ps -a.",
    )
    parser.add_argument("--quick", action="store_true", help="10 and 100 nodes, fewer samples")
    options = parser.parse_args()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(fields)s", defaults={"fields": ""}
        )
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    measured = asyncio.run(measure_scale(options.quick))
    print(_table(measured))
    print()
    for r in measured:
        print(f"- {r['row']} [{r['metric']}]: {r['note']}")
