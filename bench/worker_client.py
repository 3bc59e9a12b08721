"""The harness's side of the measuring worker process (bench/worker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from typing import Any, TypeVar

from bench.targets import REPO_ROOT

log = logging.getLogger("bench.worker")

T = TypeVar("T")
# A job's answer carries every latency sample of a load run.
_LINE_LIMIT = 256 * 1024 * 1024
# Longer than any job takes (each bounds its own waits, the longest at 300 s): past this the
# worker itself is stuck.
JOB_TIMEOUT = 420.0
# bench.worker.STACK_DUMP_SIGNAL, not imported: that module pulls in every job's code.
_STACK_DUMP_SIGNAL = signal.SIGUSR1


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
        """Runs one job (a dataclass spec) in the worker; its result as `result_type`. A job
        that overruns JOB_TIMEOUT gets the worker's stack dumped (on stderr), the worker
        replaced, and WorkerError."""
        line = json.dumps({"kind": kind, "spec": dataclasses.asdict(spec)}) + "\n"
        async with self._lock:
            process = self._process
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(line.encode())
            await process.stdin.drain()
            try:
                answer = await asyncio.wait_for(process.stdout.readline(), JOB_TIMEOUT)
            except TimeoutError:
                await self._replace()
                raise WorkerError(
                    f"{kind} job stalled for {JOB_TIMEOUT:.0f} s in worker pid {process.pid} "
                    "(its stack is dumped in the log); the worker was replaced"
                ) from None
        if not answer:
            raise WorkerError(f"the worker exited (status {process.returncode})")
        reply = json.loads(answer)
        if not reply["ok"]:
            raise WorkerError(f"{kind} job failed in the worker:\n{reply['error']}")
        return result_type(**reply["result"])

    async def _replace(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(_STACK_DUMP_SIGNAL)
        await asyncio.sleep(1.0)
        self.kill()
        await self._process.wait()
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
