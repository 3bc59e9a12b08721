"""The measuring client's own process: `python -m bench.worker`.

It reads one job per line on stdin (JSON: kind and spec), runs it on a fresh uvloop event
loop, and answers one JSON line on stdout. Keeping the timed client here leaves the
harness's orchestration (and its event loop) out of every measurement, and gives the client
a core of its own whenever the box has one to spare.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from bench.cycles import CycleSpec, run_cycles
from bench.load import LoadSpec, run_load
from bench.stream_client import BodySpec, PipeSpec, pipe_hijacked, read_body

STACK_DUMP_SIGNAL = signal.SIGUSR1

Job = tuple[type[Any], Callable[[Any], Coroutine[Any, Any, Any]]]

JOBS: dict[str, Job] = {
    "load": (LoadSpec, run_load),
    "body": (BodySpec, read_body),
    "pipe": (PipeSpec, pipe_hijacked),
    "cycles": (CycleSpec, run_cycles),
}


def run_job(line: str) -> dict[str, Any]:
    request = json.loads(line)
    spec_type, function = JOBS[request["kind"]]
    spec = spec_type(**request["spec"])
    try:
        result: Any = uvloop.run(function(spec))
    except Exception:  # the harness reports it with the row
        return {"ok": False, "error": traceback.format_exc()}
    return {"ok": True, "result": dataclasses.asdict(result)}


def main() -> None:
    # A Ctrl-C in the terminal is the harness's to handle: it stops this process in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The harness asks for this before killing a job that overran: where it hung.
    faulthandler.register(STACK_DUMP_SIGNAL)
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(run_job(line)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
