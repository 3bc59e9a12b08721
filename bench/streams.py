"""Streaming rows: `logs`, `export`, `attach` and `exec -i`, in MB/s (10^6 bytes a second).

Every container is made through the proxy and pinned to the direct node, so that the direct
and the proxy measurements read the very same container (or the same kind, made the same
way) from the same daemon.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.context import Containers, Context
from bench.docker_api import container_config
from bench.interleave import interleaved
from bench.proc import CpuMeter, CpuUse, describe_cpu
from bench.report import Row, make_row, ratio_at_least
from bench.stream_client import BodyResult, BodySpec, PipeResult, PipeSpec
from bench.targets import Endpoint

log = logging.getLogger("bench.streams")

LINE_CHARS = 5000
STREAM_TARGET = ratio_at_least(0.95)


async def _rates(
    ctx: Context, what: str, measure: Callable[[Endpoint], Awaitable[float]]
) -> _Rates:
    """MB/s of every interleaved round, direct and proxy."""
    endpoints = [ctx.targets.direct, ctx.targets.proxy]
    rates: dict[str, list[float]] = {e.label: [] for e in endpoints}
    cpu: dict[str, list[CpuUse]] = {e.label: [] for e in endpoints}

    async def one(endpoint: Endpoint) -> None:
        meter = CpuMeter(ctx.worker.pid, endpoint.pid)
        rate = await measure(endpoint)
        cpu[endpoint.label].append(meter.stop())
        log.info("%s %s: %.0f MB/s", what, endpoint.label, rate)
        rates[endpoint.label].append(rate)

    await interleaved(ctx.settings.rounds, endpoints, one)
    busy = "; ".join(f"{e.label}: {describe_cpu(cpu[e.label], e.server)}" for e in endpoints)
    return _Rates(rates[endpoints[0].label], rates[endpoints[1].label], busy)


@dataclass
class _Rates:
    direct: list[float]
    proxy: list[float]
    # How busy client and server were, for the note.
    cpu: str


def _row(name: str, rates: _Rates, note: str) -> Row:
    direct, proxy = rates.direct, rates.proxy
    note += (
        f"; median of {len(proxy)} interleaved rounds (direct {min(direct):.0f}-"
        f"{max(direct):.0f}, proxy {min(proxy):.0f}-{max(proxy):.0f}); CPU during the runs "
        f"(100% = one core), {rates.cpu}"
    )
    return make_row(
        name,
        "throughput",
        statistics.median(direct),
        statistics.median(proxy),
        "MB/s",
        STREAM_TARGET,
        note,
    )


def _read_whole(ctx: Context, path: str, expected: int) -> Callable[[Endpoint], Awaitable[float]]:
    async def measure(endpoint: Endpoint) -> float:
        result = await ctx.worker.run("body", BodySpec(endpoint.url, path), BodyResult)
        if result.status != 200 or result.body_bytes < expected:
            raise RuntimeError(
                f"GET {path} on {endpoint.label}: status {result.status}, "
                f"{result.body_bytes} bytes (expected at least {expected})"
            )
        return result.mb_per_s

    return measure


async def _run_to_end(ctx: Context, made: Containers, cmd: list[str]) -> str:
    container_id = await made.create(
        ctx.proxy_api, container_config(cmd, pin_to=ctx.targets.node_name), start=True
    )
    status = await ctx.proxy_api.wait(container_id)
    if status != 0:
        raise RuntimeError(f"{cmd} exited with {status}")
    return container_id


async def measure_logs(ctx: Context) -> list[Row]:
    size = ctx.settings.logs_bytes
    prefix = f"/v{ctx.targets.api_version}"
    async with Containers() as made:
        log.info("writing %d MB of logs", size // 1_000_000)
        script = f"yes $(printf '%0{LINE_CHARS}d' 0) | head -c {size}"
        container_id = await _run_to_end(ctx, made, ["sh", "-c", script])
        path = f"{prefix}/containers/{container_id}/logs?stdout=1"
        rates = await _rates(ctx, "logs", _read_whole(ctx, path, size))
    note = (
        f"`docker logs` of a container that wrote {size / 1e6:.0f} MB in "
        f"{LINE_CHARS + 1}-byte lines (json-file driver); body bytes, frame headers included"
    )
    return [_row("GET /containers/{id}/logs", rates, note)]


async def measure_export(ctx: Context) -> list[Row]:
    size = ctx.settings.export_bytes
    prefix = f"/v{ctx.targets.api_version}"
    async with Containers() as made:
        log.info("writing a %d MB file", size // 1_000_000)
        script = f"dd if=/dev/urandom of=/big bs=1000000 count={size // 1_000_000} 2>/dev/null"
        container_id = await _run_to_end(ctx, made, ["sh", "-c", script])
        path = f"{prefix}/containers/{container_id}/export"
        rates = await _rates(ctx, "export", _read_whole(ctx, path, size))
    note = f"a stopped container holding a {size / 1e6:.0f} MB random file; tar body bytes"
    return [_row("GET /containers/{id}/export", rates, note)]


def _check_pipe(result: PipeResult, what: str) -> float:
    if result.status != 101 or result.error:
        raise RuntimeError(f"{what}: status {result.status}: {result.error}")
    return result.mb_per_s


async def measure_attach(ctx: Context) -> list[Row]:
    size = ctx.settings.pipe_bytes
    prefix = f"/v{ctx.targets.api_version}"
    async with Containers() as made:

        async def measure(endpoint: Endpoint) -> float:
            # StdinOnce: the container's stdin closes when this attach's input ends, so
            # `cat` ends; a new container for every turn.
            config = container_config(
                ["cat"],
                pin_to=ctx.targets.node_name,
                OpenStdin=True,
                StdinOnce=True,
                AttachStdin=True,
                AttachStdout=True,
            )
            container_id = await made.create(ctx.proxy_api, config, start=True)
            spec = PipeSpec(
                url=endpoint.url,
                method="POST",
                path=f"{prefix}/containers/{container_id}/attach?stream=1&stdin=1&stdout=1",
                body=None,
                send_bytes=size,
            )
            rate = _check_pipe(await ctx.worker.run("pipe", spec, PipeResult), "attach")
            await ctx.proxy_api.wait(container_id)
            return rate

        rates = await _rates(ctx, "attach", measure)
    note = (
        f"{size / 1e6:.0f} MB of random bytes into `cat` (no TTY) and back, on one hijacked "
        "connection, half-closed after the input; a fresh container per turn"
    )
    return [_row("attach stdin→cat→stdout", rates, note)]


async def measure_exec(ctx: Context) -> list[Row]:
    size = ctx.settings.pipe_bytes
    prefix = f"/v{ctx.targets.api_version}"
    async with Containers() as made:
        container_id = await made.create(
            ctx.proxy_api,
            container_config(["sleep", "3600"], pin_to=ctx.targets.node_name),
            start=True,
        )

        async def measure(endpoint: Endpoint) -> float:
            # The exec is made through the target it is started on, so that the proxy has
            # it in its index as a client's would be.
            exec_id = await ctx.api(endpoint).create_exec(
                container_id,
                {"AttachStdin": True, "AttachStdout": True, "Tty": False, "Cmd": ["cat"]},
            )
            spec = PipeSpec(
                url=endpoint.url,
                method="POST",
                path=f"{prefix}/exec/{exec_id}/start",
                body={"Detach": False, "Tty": False},
                send_bytes=size,
            )
            return _check_pipe(await ctx.worker.run("pipe", spec, PipeResult), "exec")

        rates = await _rates(ctx, "exec", measure)
    note = (
        f"{size / 1e6:.0f} MB of random bytes into `exec -i cat` (no TTY) and back, "
        "half-closed after the input; a new exec per turn in one running container"
    )
    return [_row("exec -i stdin→cat→stdout", rates, note)]
