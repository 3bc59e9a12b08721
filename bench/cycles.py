"""Container lifecycle rate: create, start, wait and remove `busybox true`, several at once.

`run_cycles` is the worker's side (bench/worker.py); `measure_cycles` the suite's row.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import dataclass, field

from bench.context import Context
from bench.docker_api import DockerApi, container_config
from bench.interleave import interleaved
from bench.report import Row, make_row, ratio_at_least
from bench.targets import Endpoint

log = logging.getLogger("bench.cycles")

CYCLE_LABEL = "bench.cycle"


@dataclass
class CycleSpec:
    url: str
    api_version: str
    concurrency: int
    duration: float
    pin_to: str = ""


@dataclass
class CycleResult:
    cycles: int
    seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else 0.0


async def run_cycles(spec: CycleSpec) -> CycleResult:
    """Cycles until `duration` has passed; each client finishes the cycle it is in, and the
    rate counts the whole time until the last one did."""
    api = DockerApi(spec.url, spec.api_version, connections=spec.concurrency * 2)
    config = container_config(["true"], pin_to=spec.pin_to, labels={CYCLE_LABEL: "1"})
    done = 0
    errors: list[str] = []

    async def client(deadline: float) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            try:
                container_id = await api.create(config)
                await api.start(container_id)
                await api.wait(container_id)
                await api.remove(container_id)
            except Exception as e:  # a failed cycle is reported, not fatal
                errors.append(f"{type(e).__name__}: {e}")
                if len(errors) > 20:
                    return
                continue
            done += 1

    try:
        started = time.perf_counter()
        deadline = started + spec.duration
        await asyncio.gather(*(client(deadline) for _ in range(spec.concurrency)))
        seconds = time.perf_counter() - started
    finally:
        await api.close()
    return CycleResult(cycles=done, seconds=seconds, errors=errors[:20])


async def measure_cycles(ctx: Context) -> list[Row]:
    targets, settings = ctx.targets, ctx.settings
    endpoints = [targets.direct, targets.proxy]
    results: dict[str, list[CycleResult]] = {e.label: [] for e in endpoints}

    async def one(endpoint: Endpoint) -> None:
        spec = CycleSpec(
            url=endpoint.url,
            api_version=targets.api_version,
            concurrency=settings.cycle_concurrency,
            duration=settings.cycle_seconds,
            pin_to=ctx.pin(endpoint),
        )
        result = await ctx.worker.run("cycles", spec, CycleResult)
        log.info("cycles %s: %.1f/s (%d errors)", endpoint.label, result.rate, len(result.errors))
        results[endpoint.label].append(result)

    await interleaved(settings.cycle_rounds, endpoints, one)
    direct = statistics.median(r.rate for r in results[targets.direct.label])
    proxy = statistics.median(r.rate for r in results[targets.proxy.label])
    errors = [e for rs in results.values() for r in rs for e in r.errors]
    note = (
        f"busybox `true`, {settings.cycle_concurrency} clients, {settings.cycle_seconds:g} s x "
        f"{settings.cycle_rounds} interleaved rounds, median round; through the proxy pinned "
        f"to {targets.node_name} (`-e constraint:node==…`) so that both sides load the same "
        "daemon"
    )
    if errors:
        note += f"; {len(errors)} failed cycles, first: {errors[0]}"
    return [
        make_row(
            f"create+start+wait+rm c={settings.cycle_concurrency}",
            "cycle rate",
            direct,
            proxy,
            "containers/s",
            ratio_at_least(0.95),
            note,
        )
    ]
