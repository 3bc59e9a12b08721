"""The measuring client's own process: `python -m bench.worker`.

It reads one job per line on stdin (JSON: kind and spec), runs it on a fresh uvloop event
loop, and answers one JSON line on stdout, with heartbeats meanwhile (see
bench/worker_protocol.py). Keeping the timed client here leaves the harness's
orchestration (and its event loop) out of every measurement, and gives the client a core
of its own whenever the box has one to spare.
"""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from bench.cycles import CycleSpec, run_cycles
from bench.load import LoadSpec, run_load
from bench.stream_client import BodySpec, PipeSpec, pipe_hijacked, read_body
from bench.worker_protocol import HEARTBEAT, HEARTBEAT_SECONDS, STACK_DUMP_SIGNAL, send_all

Job = tuple[type[Any], Callable[[Any], Coroutine[Any, Any, Any]]]

JOBS: dict[str, Job] = {
    "load": (LoadSpec, run_load),
    "body": (BodySpec, read_body),
    "pipe": (PipeSpec, pipe_hijacked),
    "cycles": (CycleSpec, run_cycles),
}


async def _beating(job: Coroutine[Any, Any, Any], answers: int) -> Any:
    """`job`'s result, with a heartbeat on `answers` every HEARTBEAT_SECONDS until then."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            send_all(answers, HEARTBEAT)

    beats = asyncio.create_task(beat())
    try:
        return await job
    finally:
        beats.cancel()


def run_job(line: str, answers: int) -> dict[str, Any]:
    request = json.loads(line)
    spec_type, function = JOBS[request["kind"]]
    spec = spec_type(**request["spec"])
    try:
        result: Any = uvloop.run(_beating(function(spec), answers))
    except Exception:  # the harness reports it with the row
        return {"ok": False, "error": traceback.format_exc()}
    return {"ok": True, "result": dataclasses.asdict(result)}


def main() -> None:
    # A Ctrl-C in the terminal is the harness's to handle: it stops this process in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.register(STACK_DUMP_SIGNAL)
    # The answers get the pipe to the harness to themselves: whatever else writes to stdout
    # (a library's print) goes to stderr, the harness's log, not into an answer.
    answers = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin:
        if line.strip():
            send_all(answers, json.dumps(run_job(line, answers)).encode() + b"\n")


if __name__ == "__main__":
    main()
