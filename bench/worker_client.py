"""The harness's side of the measuring worker process (bench/worker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from typing import Any, TypeVar

from bench.targets import REPO_ROOT
from bench.worker_protocol import HEARTBEAT, SILENCE_TIMEOUT, STACK_DUMP_SIGNAL

log = logging.getLogger("bench.worker")

T = TypeVar("T")
# A job's answer carries every latency sample of a load run.
_LINE_LIMIT = 256 * 1024 * 1024
# Longer than any job takes (each bounds its own waits, the longest at 300 s): past this
# the worker is stuck, though its heartbeats go on.
JOB_TIMEOUT = 420.0
# How long a worker that closed its stdout is given to tell its exit status.
_EXIT_WAIT = 5.0


class WorkerError(RuntimeError):
    pass


async def _spawn() -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        limit=_LINE_LIMIT,
    )
    log.info("measuring worker pid %d", process.pid)
    return process


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(cls) -> Worker:
        return cls(await _spawn())

    async def run(self, kind: str, spec: Any, result_type: type[T]) -> T:
        """Runs one job (a dataclass spec) in the worker; its result as `result_type`.
        WorkerError if the job fails; also if the worker exits, goes silent for
        SILENCE_TIMEOUT (no heartbeat, no answer) or overruns JOB_TIMEOUT, and then it is
        replaced for the jobs that follow (after dumping its stack on stderr when it still
        runs)."""
        job = json.dumps({"kind": kind, "spec": dataclasses.asdict(spec)}).encode() + b"\n"
        async with self._lock:
            process = self._process
            try:
                reply = await self._exchange(process, job)
            except WorkerError as e:
                await self._replace()
                raise WorkerError(
                    f"{kind} job in worker pid {process.pid}: {e}; the worker was replaced"
                ) from None
        if not reply["ok"]:
            raise WorkerError(f"{kind} job failed in the worker:\n{reply['error']}")
        return result_type(**reply["result"])

    async def _exchange(self, process: asyncio.subprocess.Process, job: bytes) -> Any:
        """Sends `job`, and reads past the heartbeats to the answer, decoded."""
        assert process.stdin is not None and process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOB_TIMEOUT
        try:
            process.stdin.write(job)
            # A job with many paths is more than the pipe holds: the worker must read it.
            await asyncio.wait_for(process.stdin.drain(), SILENCE_TIMEOUT)
            line = HEARTBEAT
            while line == HEARTBEAT:
                wait = min(SILENCE_TIMEOUT, deadline - loop.time())
                line = await asyncio.wait_for(process.stdout.readline(), wait)
        except TimeoutError:
            if loop.time() >= deadline:
                raise WorkerError(f"it overran {JOB_TIMEOUT:.0f} s") from None
            raise WorkerError(
                f"no heartbeat or answer for {SILENCE_TIMEOUT:.0f} s: it is stuck (its stack "
                "is dumped in the log), or its answer was cut short"
            ) from None
        except ConnectionError:  # it exited before it took the job
            line = b""
        if not line.endswith(b"\n"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _EXIT_WAIT)
            cut = f" after {len(line)} bytes of an answer" if line else ""
            raise WorkerError(f"it exited (status {process.returncode}){cut}; see the log")
        try:
            return json.loads(line)
        except ValueError as e:
            raise WorkerError(f"its answer is not JSON ({e}): {line[:200]!r}") from None

    async def _replace(self) -> None:
        process = self._process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(STACK_DUMP_SIGNAL)
            await asyncio.sleep(1.0)
        self.kill()
        await process.wait()
        self._process = await _spawn()

    async def close(self) -> None:
        process = self._process
        if process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def kill(self) -> None:
        """For a teardown that cannot wait (the event loop is going away)."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
