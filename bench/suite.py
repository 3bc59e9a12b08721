"""The whole run: bring the targets up, measure the selected groups of rows, tear down."""

from __future__ import annotations

import contextlib
import importlib
import logging
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.context import Context
from bench.cycles import measure_cycles
from bench.docker_api import DockerApi
from bench.memory import measure_memory
from bench.report import Row, skipped_row
from bench.request_rows import measure_inspect, measure_ping, measure_ps
from bench.settings import Settings
from bench.streams import measure_attach, measure_exec, measure_export, measure_logs
from bench.targets import (
    Endpoint,
    LocalCluster,
    ProxyProcess,
    Targets,
    external_endpoints,
    raise_open_files,
    start_local,
    start_proxies,
)
from bench.worker_client import Worker

log = logging.getLogger("bench")

Group = Callable[[Context], Awaitable[list[Row]]]

GROUPS: dict[str, Group] = {
    "ping": measure_ping,
    "inspect": measure_inspect,
    "ps": measure_ps,
    "logs": measure_logs,
    "export": measure_export,
    "attach": measure_attach,
    "exec": measure_exec,
    "cycles": measure_cycles,
    "memory": measure_memory,
}
SCALE = "scale"
GROUP_NAMES = [*GROUPS, SCALE]
WORKERS_ROW = "[workers=2] proxy"


@dataclass
class Options:
    settings: Settings
    groups: list[str]
    proxy_url: str = ""
    node_url: str = ""
    node_name: str = "node-1"
    proxy_log_level: str = "info"


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    daemon_version: str = ""
    preamble: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


async def run(options: Options) -> Outcome:
    outcome = Outcome()
    outcome.details["settings"] = asdict(options.settings)
    outcome.details["seconds"] = {}
    groups = [g for g in options.groups if g != SCALE]
    if groups:
        await _measure_targets(options, groups, outcome)
    if SCALE in options.groups:
        started = time.monotonic()
        try:
            outcome.rows += await _measure_scale(options.settings.quick)
        except Exception as e:  # a failed group becomes a row
            log.exception("%s failed", SCALE)
            outcome.rows.append(_failed(SCALE, e, ""))
        outcome.details["seconds"][SCALE] = round(time.monotonic() - started, 1)
    if not outcome.daemon_version:
        outcome.daemon_version = _dockerd_version()
    return outcome


def _dockerd_version() -> str:
    result = subprocess.run(["dockerd", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


async def _measure_scale(quick: bool) -> list[Row]:
    try:
        scale = importlib.import_module("bench.scale")
    except ImportError as e:
        if e.name != "bench.scale":
            raise
        return [skipped_row("scale (simulated nodes)", "bench/scale.py does not exist yet")]
    measure: Callable[[bool], Awaitable[list[dict[str, Any]]]] = scale.measure_scale
    return [Row(**d) for d in await measure(quick)]


async def _measure_targets(options: Options, groups: list[str], outcome: Outcome) -> None:
    raise_open_files()
    with contextlib.ExitStack() as stack:
        targets, local = await _bring_up(options, stack)
        outcome.daemon_version = targets.daemon_version
        outcome.preamble += _describe(targets, local, options)
        worker = await Worker.start()
        stack.callback(worker.kill)
        ctx = Context(targets, worker, options.settings)
        try:
            await _measure_groups(ctx, groups, outcome)
        finally:
            await ctx.close()
            await worker.close()
            if local is not None:
                outcome.details["proxy logs"] = _proxy_problems(local)


async def _bring_up(
    options: Options, stack: contextlib.ExitStack
) -> tuple[Targets, LocalCluster | None]:
    if options.proxy_url:
        direct, proxy = external_endpoints(options.proxy_url, options.node_url)
        workers: Endpoint | None = None
        skipped = "external targets (--proxy/--node): only the given proxy is measured"
        node_name, local = options.node_name, None
    else:
        local = start_local(stack, options.proxy_log_level)
        main, second, skipped = start_proxies(local)
        first = local.nodes[0]
        direct = Endpoint("direct", first.tcp_address, False, first.pid)
        proxy = Endpoint("proxy", main.address, True, main.pid)
        workers = None
        if second is not None:
            workers = Endpoint("workers=2", second.address, True, second.pid)
        node_name = first.name
    api = DockerApi(direct.url)
    try:
        version = await api.version()
    finally:
        await api.close()
    targets = Targets(
        direct=direct,
        proxy=proxy,
        proxy_workers=workers,
        workers_skipped=skipped,
        node_name=node_name,
        api_version=str(version["ApiVersion"]),
        daemon_version=f"{version['Version']} (API {version['ApiVersion']})",
        local=local,
    )
    return targets, local


def _describe(targets: Targets, local: LocalCluster | None, options: Options) -> list[str]:
    lines = [
        f"mode: {'quick' if options.settings.quick else 'full'}; every row's targets take "
        f"turns in {options.settings.rounds} rounds (cycles: {options.settings.cycle_rounds})",
        f"direct: dockerd {targets.node_name} at {targets.direct.url}",
    ]
    if local is not None:
        lines += [
            f"proxy: `python -m swarmproxy serve` over {len(local.nodes)} dockerd nodes "
            f"(vfs storage driver), storage {local.redis.url} (redis-server), log level "
            f"{options.proxy_log_level} (one log line per request at info)",
            "the measuring client runs in a process of its own (bench/worker.py, uvloop, "
            "raw sockets)",
        ]
    else:
        lines.append(f"proxy: {targets.proxy.url} (given)")
    if targets.proxy_workers is not None:
        lines.append("a second proxy with `[server] workers = 2` on the same nodes and index")
    lines.append("MB = 10^6 bytes, MiB = 2^20 bytes; ratio = proxy / direct")
    return lines


async def _measure_groups(ctx: Context, groups: list[str], outcome: Outcome) -> None:
    if ctx.targets.proxy_workers is None and any(g in groups for g in ("ping", "inspect", "ps")):
        outcome.rows.append(skipped_row(WORKERS_ROW, ctx.targets.workers_skipped))
    for group in groups:
        dead = _dead_proxy(ctx)
        if dead:
            outcome.rows.append(skipped_row(group, dead))
            continue
        log.info("== %s", group)
        started = time.monotonic()
        try:
            outcome.rows += await GROUPS[group](ctx)
        except Exception as e:  # a failed group becomes a row, with the proxy's log
            log.exception("%s failed", group)
            outcome.rows.append(_failed_row(ctx, group, e))
        outcome.details["seconds"][group] = round(time.monotonic() - started, 1)


def _dead_proxy(ctx: Context) -> str:
    local = ctx.targets.local
    if local is None:
        return ""
    main = local.proxies["main"]
    code = main.process.poll()
    if code is None:
        return ""
    return f"the main proxy exited with {code}; log tail: {main.log_tail(5)}"


def _failed_row(ctx: Context, group: str, error: Exception) -> Row:
    local = ctx.targets.local
    context = ""
    if local is not None:
        main = local.proxies["main"]
        code = main.process.poll()
        if code is None:
            # A running proxy's tail at level info is its requests and reconciliations: what
            # may tell about the failure is what it warned of.
            count, last = main.problems(limit=3)
            shown = f", the last: {' / '.join(last)}" if last else ""
            context = f" - the main proxy is still running ({count} warnings and errors{shown})"
        else:
            context = f" - the main proxy exited with {code}; its log tail: {main.log_tail(5)}"
    return _failed(group, error, context)


def _failed(group: str, error: Exception, context: str) -> Row:
    note = f"FAILED: {type(error).__name__}: {str(error)[:600]}{context}"
    return Row(
        row=group, metric="FAILED", direct=None, proxy=None, unit="", target="", met=None, note=note
    )


def _proxy_problems(local: LocalCluster) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, proxy in local.proxies.items():
        count, last = proxy.problems()
        report[name] = {
            "pid": proxy.pid,
            "exit": proxy.process.poll(),
            "warnings and errors": count,
            "last": last,
            "log tail": _tail_if_dead(proxy),
        }
    return report


def _tail_if_dead(proxy: ProxyProcess) -> str:
    code = proxy.process.poll()
    return proxy.log_tail(40) if code not in (None, 0) else ""
