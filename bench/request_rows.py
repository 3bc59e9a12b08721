"""Request/response rows: `GET /_ping`, container inspect and `ps -a`, latency and rate at
several concurrencies; and the measuring client's own ceiling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from bench.context import Containers, Context, bounded
from bench.docker_api import DockerApi, container_config
from bench.interleave import interleaved
from bench.load import LoadResult, LoadSpec, LoadSummary, summarize
from bench.proc import CpuMeter, CpuUse, describe_cpu
from bench.report import Row, Target, make_row, ratio_at_least, ratio_at_most
from bench.targets import REPO_ROOT, Endpoint
from bench.wire import host_port

log = logging.getLogger("bench.requests")

PS_LABEL = "bench.ps"


@dataclass
class _Measured:
    """One target's runs of a load: summarized, and how busy client and server were."""

    summary: LoadSummary
    cpu: list[CpuUse]


async def _rounds(
    ctx: Context,
    paths: Callable[[Endpoint], list[str]],
    concurrency: int,
    what: str,
    extra: Sequence[Endpoint] = (),
) -> dict[str, _Measured]:
    """Every target (and `extra` ones) in turn, `rounds` times; each one's runs summarized."""
    endpoints = [*ctx.targets.endpoints, *extra]
    results: dict[str, list[LoadResult]] = {e.label: [] for e in endpoints}
    cpu: dict[str, list[CpuUse]] = {e.label: [] for e in endpoints}

    async def one(endpoint: Endpoint) -> None:
        spec = LoadSpec(
            url=endpoint.url,
            paths=paths(endpoint),
            concurrency=concurrency,
            duration=ctx.settings.load_seconds,
            warmup=ctx.settings.load_warmup,
        )
        meter = CpuMeter(ctx.worker.pid, endpoint.pid)
        result = await ctx.worker.run("load", spec, LoadResult)
        cpu[endpoint.label].append(meter.stop())
        log.info(
            "%s c=%d %s: %.0f req/s%s",
            what,
            concurrency,
            endpoint.label,
            result.rate,
            f" errors: {result.errors[:2]}" if result.errors else "",
        )
        results[endpoint.label].append(result)

    await interleaved(ctx.settings.rounds, endpoints, one)
    return {label: _Measured(summarize(rs), cpu[label]) for label, rs in results.items()}


def _problems(summary: LoadSummary) -> str:
    """What went wrong in a summary's runs, for the row's note: non-2xx answers, errors."""
    bad = {s: n for s, n in summary.statuses.items() if not s.startswith("2")}
    parts = []
    if bad:
        parts.append(f"answers by status {summary.statuses}")
    if summary.errors:
        parts.append(f"{len(summary.errors)} connection errors, first: {summary.errors[0]}")
    return "; ".join(parts)


def _rows(
    name: str,
    concurrency: int,
    measured: dict[str, _Measured],
    ctx: Context,
    targets: dict[str, Target],
    note: str,
) -> list[Row]:
    """p50, p99 and rate rows for every proxy target against the direct one. `targets` maps
    a metric (p50, p99, rate) to its goal."""
    direct = measured[ctx.targets.direct.label]
    rows = []
    for endpoint in ctx.targets.endpoints:
        if not endpoint.via_proxy:
            continue
        proxy = measured[endpoint.label]
        suffix = "" if endpoint == ctx.targets.proxy else f" [{endpoint.label}]"
        row = f"{name} c={concurrency}{suffix}"
        problems = "; ".join(p for p in (_problems(direct.summary), _problems(proxy.summary)) if p)
        rate_note = (
            f"median of {len(proxy.summary.rates)} interleaved rounds of "
            f"{ctx.settings.load_seconds:g} s; direct rounds {_spread(direct.summary.rates)}, "
            f"proxy rounds {_spread(proxy.summary.rates)}"
        )
        busy = [
            f"direct: {describe_cpu(direct.cpu, ctx.targets.direct.server)}",
            f"proxy: {describe_cpu(proxy.cpu, endpoint.server)}",
        ]
        rate_note += f"; CPU during the runs (100% = one core), {'; '.join(busy)}"
        setup = note if endpoint == ctx.targets.proxy or not note else "set up as above"
        full_note = "; ".join(p for p in (setup, problems) if p)
        d, p = direct.summary, proxy.summary
        rows += [
            make_row(row, "p50 latency", d.p50_ms, p.p50_ms, "ms", targets.get("p50"), full_note),
            make_row(row, "p99 latency", d.p99_ms, p.p99_ms, "ms", targets.get("p99")),
            make_row(row, "throughput", d.rate, p.rate, "req/s", targets.get("rate"), rate_note),
        ]
    return rows


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{min(values):,.0f}-{max(values):,.0f}"


# -- the client's ceiling -----------------------------------------------------------


@contextlib.asynccontextmanager
async def _helper_server(module: str, *args: str) -> AsyncIterator[tuple[str, int]]:
    """A server of the bench's own (bench.sink, bench.relay): its URL and pid."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, stdout=subprocess.PIPE, cwd=REPO_ROOT
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"{module} exited before serving")
        yield f"tcp://127.0.0.1:{int(line)}", process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _client_ceiling(ctx: Context, concurrency: int) -> tuple[float, list[CpuUse]]:
    rates, cpu = [], []
    async with _helper_server("bench.sink") as (url, pid):
        for _ in range(ctx.settings.ceiling_runs):
            spec = LoadSpec(
                url=url,
                paths=["/_ping"],
                concurrency=concurrency,
                duration=ctx.settings.load_seconds,
                warmup=ctx.settings.load_warmup,
            )
            meter = CpuMeter(ctx.worker.pid, pid)
            rates.append((await ctx.worker.run("load", spec, LoadResult)).rate)
            cpu.append(meter.stop())
    log.info("client ceiling c=%d: %.0f req/s", concurrency, max(rates))
    return statistics.median(rates), cpu


# -- the rows -----------------------------------------------------------------------


async def measure_ping(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    direct_rates: dict[int, float] = {}
    goals = {"p50": ratio_at_most(1.3)}
    for concurrency in ctx.settings.concurrencies:
        measured = await _rounds(ctx, lambda _: ["/_ping"], concurrency, "GET /_ping")
        direct_rates[concurrency] = measured[ctx.targets.direct.label].summary.rate
        rows += _rows("GET /_ping", concurrency, measured, ctx, goals, "")
    top = max(ctx.settings.concurrencies)
    ceiling, ceiling_cpu = await _client_ceiling(ctx, top)
    rows.append(
        make_row(
            f"load client ceiling c={top}",
            "throughput",
            direct_rates[top],
            ceiling,
            "req/s",
            ratio_at_least(1.5),
            "not the proxy: the proxy column is the measuring client's own rate against a "
            "server that answers a canned `OK` (bench/sink.py) on this box, the direct "
            "column is dockerd's /_ping; the ratio is the client's headroom over the fastest "
            "target it drives; CPU against the canned server: "
            f"{describe_cpu(ceiling_cpu, 'server')}. "
            "On a box this small, client and server share the cores: when the ratio is near "
            "1, the direct figures at this concurrency are bounded by the client (which "
            "flatters the proxy's ratio, never hurts it)",
        )
    )
    return rows


async def measure_inspect(ctx: Context) -> list[Row]:
    api_prefix = f"/v{ctx.targets.api_version}"
    async with Containers() as made:
        # Made through the proxy and pinned to the direct node: the proxy has it in its
        # index, and the direct target inspects the very same container.
        container_id = await made.create(
            ctx.proxy_api,
            container_config(["sleep", "3600"], pin_to=ctx.targets.node_name),
            start=True,
        )
        await ctx.direct_api.inspect(container_id)
        path = f"{api_prefix}/containers/{container_id}/json"
        rows: list[Row] = []
        host, port = host_port(ctx.targets.direct.url)
        async with _helper_server("bench.relay", host, str(port)) as (url, pid):
            relay = Endpoint(RELAY, url, via_proxy=False, pid=pid)
            for concurrency in ctx.settings.concurrencies:
                goals = {"p50": ratio_at_most(1.5)} if concurrency == 1 else {}
                if concurrency > 1:
                    goals["rate"] = ratio_at_least(0.6)
                measured = await _rounds(ctx, lambda _: [path], concurrency, "inspect", [relay])
                note = (
                    f"one running `sleep` container made through the proxy, pinned to "
                    f"{ctx.targets.node_name} (the direct node); both inspect it by full ID"
                )
                name = "GET /containers/{id}/json"
                rows += _rows(name, concurrency, measured, ctx, goals, note)
                rows += _floor_rows(f"{name} c={concurrency}", measured, ctx)
    return rows


RELAY = "bare relay"


def _floor_rows(name: str, measured: dict[str, _Measured], ctx: Context) -> list[Row]:
    """The same inspects through bench.relay: what the extra hop costs by itself."""
    direct, relay = measured[ctx.targets.direct.label], measured[RELAY]
    d, r = direct.summary, relay.summary
    note = (
        "not the proxy: a bare TCP relay (bench/relay.py, uvloop, no parsing) in front of "
        "the direct node, in the same rounds: the cost of one more hop by itself on this "
        f"machine, the floor under any proxy's ratio; rounds {_spread(r.rates)} req/s; CPU "
        f"{describe_cpu(relay.cpu, 'relay')}"
    )
    return [
        make_row(f"{name} [{RELAY}]", "p50 latency", d.p50_ms, r.p50_ms, "ms", None, note),
        make_row(f"{name} [{RELAY}]", "throughput", d.rate, r.rate, "req/s", None),
    ]


async def _count_by_node(ctx: Context, label: str) -> str:
    """How the proxy spread the containers labelled `label`, when this run knows the nodes."""
    local = ctx.targets.local
    if local is None:
        return "spread unknown (external targets)"
    counts = []
    for node in local.nodes:
        api = DockerApi(node.tcp_address, ctx.targets.api_version)
        try:
            listed = await api.list_containers({"label": [label]})
        finally:
            await api.close()
        counts.append(f"{node.name} {len(listed)}")
    return ", ".join(counts)


async def measure_ps(ctx: Context) -> list[Row]:
    count = ctx.settings.ps_containers
    api_prefix = f"/v{ctx.targets.api_version}"
    spread, single = f"{PS_LABEL}=spread", f"{PS_LABEL}=single"
    async with Containers() as made:
        # Created, not started: `ps -a` lists them all the same, and they cost no process.
        await bounded(
            made.create(ctx.proxy_api, container_config(["true"], labels={PS_LABEL: "spread"}))
            for _ in range(count)
        )
        await bounded(
            made.create(ctx.direct_api, container_config(["true"], labels={PS_LABEL: "single"}))
            for _ in range(count)
        )
        proxy_listed = len(await ctx.proxy_api.list_containers({"label": [spread]}))
        direct_listed = len(await ctx.direct_api.list_containers({"label": [single]}))
        placement = await _count_by_node(ctx, spread)

        def path(endpoint: Endpoint) -> list[str]:
            label = spread if endpoint.via_proxy else single
            filters = quote(json.dumps({"label": [label]}))
            return [f"{api_prefix}/containers/json?all=1&filters={filters}"]

        measured = await _rounds(ctx, path, 1, "ps -a")
    note = (
        f"{count} created-not-started containers made through the proxy ({placement}; "
        f"it lists {proxy_listed}) against {count} made on the direct node (it lists "
        f"{direct_listed}). Each side filters on its own label: the direct node also holds "
        "the proxy's share, and the proxy lists every node, so without the filter neither "
        "side would list exactly its 50"
    )
    return _rows("GET /containers/json?all=1", 1, measured, ctx, {"p50": ratio_at_most(1.0)}, note)
