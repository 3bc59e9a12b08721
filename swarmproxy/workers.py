"""`[server] workers = N`: N processes serving the same listeners, one per core.

One Python process runs on one core. The supervisor binds the unix sockets (which cannot
be bound twice), then forks the workers before any event loop or connection exists; each
worker binds every tcp:// port itself with SO_REUSEPORT, so that the kernel spreads new
connections over them. Workers share nothing in process: names, rotation and the index
are in the storage they share (Redis), exactly as between proxy replicas. Signals are
passed on: SIGTERM and SIGINT drain every worker, SIGHUP makes each read its config again.
A worker that dies is started again, unless it dies at once (a config that cannot serve).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from swarmproxy import log as log_module
from swarmproxy.log import log_event

log = logging.getLogger("swarmproxy.workers")

# A worker that exits sooner than this after its start is not started again: it would
# only fail again (a port taken, storage refused at start).
_MIN_LIFETIME = 5.0
_PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# prometheus-client's multiprocess mode: where each worker writes its figures.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Workers:
    """What one worker is told: which one it is, and the unix sockets it shares."""

    index: int
    count: int
    unix_sockets: Mapping[str, socket.socket] = field(default_factory=dict)


def supervise(count: int, unix_addresses: list[str], serve: Callable[[Workers], None]) -> int:
    """Run `serve` in `count` forked workers until they have all stopped; the exit status
    is 0 when they stopped on a signal, 1 when one could not keep running."""
    # Before anything imports prometheus-client, which reads it once: each worker's figures
    # go to files there, for a scrape of any worker to add up.
    metrics_dir = tempfile.mkdtemp(prefix="swarmproxy-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics_dir
    from swarmproxy.api.app import bind_unix

    sockets = {address: bind_unix(address) for address in unix_addresses}
    stopping = False
    failed = False
    running: dict[int, tuple[int, float]] = {}

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in _PASSED_ON:
                signal.signal(sig, signal.SIG_DFL)
            status = 1
            try:
                serve(Workers(index, count, sockets))
                status = 0
            finally:
                # Never return into the supervisor's code in a child; and os._exit skips
                # atexit, so the log lines still queued are written first.
                log_module.close()
                os._exit(status)
        running[pid] = (index, time.monotonic())
        log_event(log, logging.INFO, "worker started", worker=index, pid=pid)

    def pass_on(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig != signal.SIGHUP:
            stopping = True
        for pid in running:
            os.kill(pid, sig)

    for sig in _PASSED_ON:
        signal.signal(sig, pass_on)
    for index in range(count):
        start(index)
    while running:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index, started = running.pop(pid)
        _forget_worker_gauges(pid)
        code = os.waitstatus_to_exitcode(status)
        log_event(log, logging.INFO, "worker stopped", worker=index, pid=pid, status=code)
        if stopping:
            continue
        if time.monotonic() - started < _MIN_LIFETIME:
            log_event(log, logging.ERROR, "worker failed at start; stopping", worker=index)
            failed = stopping = True
            for other in running:
                os.kill(other, signal.SIGTERM)
            continue
        start(index)
    for sock in sockets.values():
        sock.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return 1 if failed else 0


def _forget_worker_gauges(pid: int) -> None:
    """A dead worker's live gauges (open connections, streams) are no more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
