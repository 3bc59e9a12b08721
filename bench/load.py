"""The concurrent request driver: closed-loop keep-alive connections, each sending its next
request as soon as the last answer is in; and the latency statistics.

Each connection is an asyncio.Protocol that parses the answer in data_received and writes
the next request from there: no coroutine, task or future per request, so one process keeps
dockerd and the proxy busy without becoming the bottleneck (the suite's client-ceiling row
checks that).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from bench.wire import ProtocolError, ResponseReader, host_port, request_bytes


@dataclass
class LoadSpec:
    url: str
    paths: list[str]
    concurrency: int
    # Measured seconds after `warmup` seconds of the same load; 0 means send `count`
    # requests instead (each path in turn), as fast as the connections allow.
    duration: float = 0.0
    warmup: float = 0.0
    count: int = 0


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_us: list[int]
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


# How long a run may go past its planned end (or, sending a count, take at all) before it
# counts as stalled: a target that stops answering must not hang the suite.
_STALL_SECONDS = 120.0


class _Run:
    def __init__(self, spec: LoadSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.requests = [request_bytes("GET", p) for p in spec.paths]
        self.issued = 0
        self.completed = 0
        self.latencies: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.finished = loop.create_future()
        self.active = 0
        self.started_ns = 0
        self.measure_from_ns = 0
        self.deadline_ns = 0

    def next_request(self) -> bytes | None:
        if self.spec.duration > 0:
            if time.perf_counter_ns() >= self.deadline_ns:
                return None
        elif self.issued >= self.spec.count:
            return None
        request = self.requests[self.issued % len(self.requests)]
        self.issued += 1
        return request

    def answered(self, sent_ns: int, received_ns: int, status: int) -> None:
        if self.spec.duration > 0 and (
            sent_ns < self.measure_from_ns or received_ns > self.deadline_ns
        ):
            return
        self.completed += 1
        self.latencies.append((received_ns - sent_ns) // 1000)
        self.statuses[status] += 1

    def connection_done(self, error: str | None) -> None:
        if error is not None:
            self.errors.append(error)
        self.active -= 1
        if self.active == 0 and not self.finished.done():
            self.finished.set_result(None)


_LENGTH_HEADER = b"\r\nContent-Length: "
_CHUNKED_HEADER = b"\r\nTransfer-Encoding:"
_CLOSE_HEADER = b"\r\nConnection: close"


def _whole_response(data: bytes) -> tuple[int, bool] | None:
    """(status, closing) when `data` is exactly one whole response with a Content-Length,
    spelled as Go's net/http and aiohttp spell it; None for anything else, which the full
    reader then takes. Most small answers (/_ping, inspect) arrive so, and this saves the
    client most of its per-request work."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    at = data.find(_LENGTH_HEADER, 0, end)
    if at < 0 or data.find(_CHUNKED_HEADER, 0, end) >= 0:
        return None
    start = at + len(_LENGTH_HEADER)
    length = int(data[start : data.find(b"\r\n", start)])
    if len(data) != end + 4 + length:
        return None
    return int(data[9:12]), data.find(_CLOSE_HEADER, 0, end) >= 0


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        # Made only for an answer the fast path does not take.
        self.reader: ResponseReader | None = None
        self.sent_ns = 0
        self.closed = False
        self.start_when_made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they behave as such.
        self.transport = cast(asyncio.Transport, transport)
        if self.start_when_made:
            self.send_next()

    def send_next(self) -> None:
        if self.transport is None:
            # uvloop may report the connection made only after create_connection returned.
            self.start_when_made = True
            return
        request = self.run.next_request()
        if request is None:
            self._finish(None)
            return
        self.reader = None
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            whole = _whole_response(data) if self.reader is None else None
            if whole is None:
                if self.reader is None:
                    self.reader = ResponseReader()
                self.reader.feed(data)
                if not self.reader.done:
                    return
                connection = self.reader.headers.get("connection", "")
                whole = self.reader.status, connection.lower() == "close"
        except (ProtocolError, ValueError) as e:
            self._finish(f"bad response: {e}")
            return
        status, closing = whole
        self.run.answered(self.sent_ns, time.perf_counter_ns(), status)
        if closing:
            self._finish(f"server closed the keep-alive connection (status {status})")
            return
        self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._finish(f"connection lost: {exc or 'closed by the server'}")

    def _finish(self, error: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.run.connection_done(error)


async def run_load(spec: LoadSpec) -> LoadResult:
    if not spec.paths or spec.concurrency < 1:
        raise ValueError("a load needs paths and at least one connection")
    loop = asyncio.get_running_loop()
    run = _Run(spec, loop)
    host, port = host_port(spec.url)
    connections: list[_Connection] = []
    try:
        async with asyncio.timeout(spec.warmup + spec.duration + _STALL_SECONDS):
            for _ in range(spec.concurrency):
                _, protocol = await loop.create_connection(lambda: _Connection(run), host, port)
                connections.append(protocol)
            run.active = len(connections)
            run.started_ns = time.perf_counter_ns()
            run.measure_from_ns = run.started_ns + int(spec.warmup * 1e9)
            run.deadline_ns = run.measure_from_ns + int(spec.duration * 1e9)
            for connection in connections:
                connection.send_next()
            await run.finished
    except TimeoutError:
        raise TimeoutError(
            f"load on {spec.url} stalled: {len(connections)} of {spec.concurrency} connected, "
            f"{run.completed} answers, {run.active} connections still waiting, "
            f"errors {run.errors[:3]}"
        ) from None
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    ended_ns = time.perf_counter_ns()
    seconds = spec.duration if spec.duration > 0 else (ended_ns - run.started_ns) / 1e9
    return LoadResult(
        requests=run.completed,
        seconds=seconds,
        latencies_us=run.latencies,
        statuses={str(k): v for k, v in sorted(run.statuses.items())},
        errors=run.errors,
    )


# -- statistics ---------------------------------------------------------------------


def percentile(values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass
class LoadSummary:
    """Several rounds of one load on one target: latencies pooled, rate the median round."""

    p50_ms: float
    p99_ms: float
    rate: float
    rates: list[float]
    requests: int
    statuses: dict[str, int]
    errors: list[str]


def summarize(results: list[LoadResult]) -> LoadSummary:
    pooled: list[int] = []
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    for r in results:
        pooled.extend(r.latencies_us)
        statuses.update(r.statuses)
        errors.extend(r.errors)
    rates = [r.rate for r in results]
    return LoadSummary(
        p50_ms=percentile(pooled, 50) / 1000,
        p99_ms=percentile(pooled, 99) / 1000,
        rate=statistics.median(rates) if rates else math.nan,
        rates=rates,
        requests=sum(r.requests for r in results),
        statuses=dict(statuses),
        errors=errors[:20],
    )
