"""Memory rows: the proxy's resident set (VmRSS, summed over the process and any worker
children) with a large index, and with many idle `logs -f` streams open.

Each row gets a proxy process of its own, started for it, so that what the other rows did
does not count, and its idle RSS right after start is the baseline (the direct column).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from bench.context import Containers, Context, bounded
from bench.docker_api import DockerApi, container_config
from bench.load import LoadResult, LoadSpec
from bench.proc import rss_mib
from bench.report import Row, make_row, skipped_row, value_at_most
from bench.targets import LocalCluster, ProxyProcess
from bench.wire import host_port
from swarmproxy.storage import open_storage

log = logging.getLogger("bench.memory")

INDEX_ROW = "proxy RSS, 10 000 indexed containers"
STREAMS_ROW = "proxy RSS, idle `logs -f` streams"
RECONCILED_TIMEOUT = 60.0
# Long enough that no reconciliation runs during the row: the records it writes name
# containers no node holds, which a reconciliation would drop.
NO_RECONCILE = 86400.0


async def _reconciled(proxy: ProxyProcess) -> None:
    """Waits for the proxy's first reconciliation, which runs in the background after start."""
    deadline = time.monotonic() + RECONCILED_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), proxy.log_path.open(errors="replace") as f:
            if any('event="index reconciled"' in line for line in f):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"proxy {proxy.name} did not reconcile:\n{proxy.log_tail()}")


async def _settled_rss(pid: int) -> float:
    # A moment for freed buffers to go back and in-flight work to end.
    await asyncio.sleep(1.0)
    return rss_mib(pid)


async def measure_memory(ctx: Context) -> list[Row]:
    local = ctx.targets.local
    if local is None:
        reason = "needs the proxy's process and its Redis: not with --proxy/--node"
        return [skipped_row(INDEX_ROW, reason), skipped_row(STREAMS_ROW, reason)]
    return [await _indexed(ctx, local), await _held_streams(ctx, local)]


async def _indexed(ctx: Context, local: LocalCluster) -> Row:
    count = ctx.settings.indexed_containers
    prefix = "bench-rss-index:"
    proxy = local.start_proxy("rss-index", prefix, reconcile_interval=NO_RECONCILE)
    try:
        await _reconciled(proxy)
        baseline = await _settled_rss(proxy.pid)
        nodes = [n.address for n in local.node_addresses]
        ids = [secrets.token_hex(32) for _ in range(count)]
        storage = open_storage(local.redis.url, prefix)
        try:
            await bounded(
                (
                    storage.store_container(cid, nodes[i % len(nodes)], f"bench-idx-{i}")
                    for i, cid in enumerate(ids)
                ),
                limit=64,
            )
        finally:
            await storage.close()
        after_write = rss_mib(proxy.pid)
        api = f"/v{ctx.targets.api_version}"
        inspected = ids[: ctx.settings.indexed_inspects]
        inspects = await ctx.worker.run(
            "load",
            LoadSpec(
                url=proxy.address,
                paths=[f"{api}/containers/{cid}/json" for cid in inspected],
                concurrency=32,
                count=len(inspected),
            ),
            LoadResult,
        )
        listings = await ctx.worker.run(
            "load",
            LoadSpec(
                url=proxy.address, paths=[f"{api}/containers/json?all=1"], concurrency=1, count=5
            ),
            LoadResult,
        )
        used = await _settled_rss(proxy.pid)
        storage = open_storage(local.redis.url, prefix)
        try:
            still_indexed = len(await storage.retrieve_containers())
        finally:
            await storage.close()
    finally:
        proxy.stop()
    log.info("RSS with %d indexed: %.1f MiB (idle %.1f MiB)", count, used, baseline)
    note = (
        f"direct column: the same proxy's idle RSS after start. {count:,} records written "
        f"straight into its Redis index with swarmproxy.storage (`store_container`, names "
        f"included; {after_write:.1f} MiB just after), then {len(inspected):,} of them "
        f"inspected through the proxy at c=32 (answers by status {inspects.statuses}: the "
        f"containers exist in the index only, so the nodes answer 404) and `ps -a` "
        f"{listings.requests}x; {still_indexed:,} records indexed at the end. The proxy is "
        "not restarted: its start-up reconciliation would drop records of containers no "
        "node holds"
    )
    if inspects.errors:
        note += f"; inspect errors: {inspects.errors[:3]}"
    return make_row(INDEX_ROW, "VmRSS", baseline, used, "MiB", value_at_most(150), note)


async def _held_streams(ctx: Context, local: LocalCluster) -> Row:
    count = ctx.settings.held_streams
    proxy = local.start_proxy("rss-streams", "bench-rss-streams:")
    api = DockerApi(proxy.address, ctx.targets.api_version)
    held: list[asyncio.StreamWriter] = []
    try:
        await _reconciled(proxy)
        baseline = await _settled_rss(proxy.pid)
        async with Containers() as made:
            # It writes one line first: a daemon may hold the answer's head back until the
            # stream has something to say.
            container_id = await made.create(
                api,
                container_config(
                    ["sh", "-c", "echo ready; exec sleep 3600"], pin_to=ctx.targets.node_name
                ),
                start=True,
            )
            path = f"/v{ctx.targets.api_version}/containers/{container_id}/logs?follow=1&stdout=1"
            host, port = host_port(proxy.address)

            async def open_stream() -> None:
                reader, writer = await asyncio.open_connection(host, port)
                held.append(writer)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                if b" 200 " not in head.split(b"\r\n", 1)[0]:
                    raise RuntimeError(f"logs -f through the proxy: {head[:200]!r}")

            started = time.monotonic()
            await bounded((open_stream() for _ in range(count)), limit=50)
            opened_in = time.monotonic() - started
            used = await _settled_rss(proxy.pid)
            alive = proxy.process.poll() is None
            for writer in held:
                writer.close()
            held.clear()
    finally:
        for writer in held:
            writer.close()
        await api.close()
        proxy.stop()
    log.info("RSS with %d streams: %.1f MiB (idle %.1f MiB)", count, used, baseline)
    per_stream = (used - baseline) * 1024 / count
    note = (
        f"direct column: the same proxy's idle RSS after start. {count:,} concurrent "
        f"`GET /containers/{{id}}/logs?follow=1&stdout=1` on one running, silent container, "
        f"all answered 200 and held open (opened in {opened_in:.1f} s); "
        f"≈{per_stream:.0f} KiB per stream over the baseline"
    )
    if not alive:
        note += "; the proxy exited while they were open"
    return make_row(
        STREAMS_ROW.replace("idle", f"{count:,} idle"), "VmRSS", baseline, used, "MiB", None, note
    )
