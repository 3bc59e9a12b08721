"""What the harness (bench/worker_client.py) and its measuring worker (bench/worker.py) say
to each other: a job is one JSON line on the worker's stdin; the worker answers one JSON
line on its stdout, and while a job runs it sends a heartbeat (an empty line) every
HEARTBEAT_SECONDS, so that a worker that went silent is known for stuck long before any
job would have ended.
"""

from __future__ import annotations

import os
import signal

HEARTBEAT = b"\n"
HEARTBEAT_SECONDS = 2.0
# Silence for this long (no heartbeat, no answer) means the worker is stuck, or that an
# answer was cut short: well above HEARTBEAT_SECONDS on a busy 2-core box.
SILENCE_TIMEOUT = 30.0
# The harness asks for this before replacing a worker that went silent: where it hung.
STACK_DUMP_SIGNAL = signal.SIGUSR1


def send_all(fd: int, data: bytes) -> None:
    """Writes all of `data` to `fd`, however many write(2) calls it takes.

    Not with sys.stdout: with PYTHONUNBUFFERED set it is a TextIOWrapper straight over the
    raw file, which makes one write(2) and drops whatever that call did not take. And a
    blocking write(2) to a full pipe does return short in the worker, with no signal
    delivered: after each job's uvloop loop has closed (libuv's io_uring with it), the
    worker's next wait in the kernel may be cut short. Answers are larger than a pipe
    holds, so the end of one, its newline with it, was lost, and the harness waited for
    it until its job timeout while the worker waited for the next job.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
