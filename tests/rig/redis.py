"""A real ``redis-server`` for the tests: loopback only, no persistence, its own directory.

``RedisServer.start(workdir)`` returns once the server answers; point clients at ``.url``
and call ``.stop()`` when done (an atexit hook stops any server a crashed run forgot).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import time

import redis

from .ports import free_port

__all__ = ["RedisServer", "RedisStartError"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# free_port() releases the port before redis-server binds it: another process may win.
_START_ATTEMPTS = 3


class RedisStartError(RuntimeError):
    """redis-server did not come up; the message carries the tail of its log."""


class RedisServer:
    def __init__(self, port: int, workdir: pathlib.Path, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.workdir = workdir
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def logfile(self) -> pathlib.Path:
        return self.workdir / "redis.log"

    @classmethod
    def start(cls, workdir: pathlib.Path) -> RedisServer:
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RedisStartError(f"{REDIS_SERVER} not found (apt-get install -y redis-server)")
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for _ in range(_START_ATTEMPTS):
            server = cls._spawn(free_port(), workdir)
            try:
                server._wait_ready()
            except RedisStartError as e:
                server.stop()
                failures.append(str(e))
                continue
            return server
        raise RedisStartError("\n".join(failures))

    @classmethod
    def _argv(cls, port: int, workdir: pathlib.Path) -> list[str]:
        """The command line; a subclass adds to it (a cluster node, a sentinel)."""
        return [
            REDIS_SERVER,
            *("--port", str(port)),
            *("--bind", "127.0.0.1"),
            *("--save", ""),
            *("--appendonly", "no"),
            *("--daemonize", "no"),
            *("--dir", str(workdir)),
            *("--logfile", str(workdir / "redis.log")),
        ]

    @classmethod
    def _spawn(cls, port: int, workdir: pathlib.Path) -> RedisServer:
        # Errors before the logfile is opened (a bad argument) go to stderr.
        with open(workdir / "redis.out", "ab") as out:
            process = subprocess.Popen(
                cls._argv(port, workdir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                # Out of the test runner's process group: a Ctrl-C reaches pytest, whose
                # teardown stops the server, not the server directly.
                start_new_session=True,
            )
        server = cls(port, workdir, process)
        # A test run that dies before its teardown must not leave the server behind.
        atexit.register(server.stop)
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while True:
                if self._process.poll() is not None:
                    raise RedisStartError(
                        f"redis-server on port {self.port} exited with "
                        f"{self._process.returncode}:\n{self._log_tail()}"
                    )
                with contextlib.suppress(redis.RedisError):
                    # The PID check: a server that won the race for our port also answers.
                    if client.info("server").get("process_id") == self.pid:
                        return
                if time.monotonic() > deadline:
                    raise RedisStartError(
                        f"redis-server on port {self.port} not ready after "
                        f"{READY_TIMEOUT:.0f}s:\n{self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.workdir / "redis.out", self.logfile):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def restart(self) -> RedisServer:
        """A new server on this one's port (stopped first), empty: it keeps nothing."""
        self.stop()
        server = type(self)._spawn(self.port, self.workdir)
        server._wait_ready()
        return server

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 5 s. Idempotent."""
        atexit.unregister(self.stop)
        if self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._process.wait()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid}, workdir={self.workdir})"
