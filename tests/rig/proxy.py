"""A real swarmproxy process in front of the rig's nodes, driven with the docker CLI and HTTP."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from swarmproxy.local_nodes import DockerNode, free_port, run_docker

READY_TIMEOUT = 30.0


class ProxyStartError(RuntimeError):
    pass


class Proxy:
    def __init__(
        self, workdir: pathlib.Path, port: int, process: subprocess.Popen[bytes], prefix: str
    ) -> None:
        self.workdir = workdir
        self.prefix = prefix
        self.port = port
        self.process = process
        self.address = f"tcp://127.0.0.1:{port}"
        self.log_path = workdir / "proxy.log"

    @classmethod
    def start(
        cls,
        workdir: pathlib.Path,
        nodes: Sequence[DockerNode],
        storage_url: str = "memory://",
        prefix: str = "swarmproxy:",
        extra_toml: str = "",
        unix_socket: pathlib.Path | None = None,
    ) -> Proxy:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        node_tables = "".join(
            f'[[nodes]]\naddress = "{n.tcp_address}"\nname = "{n.name}"\n'
            f'labels = {{ rig = "yes", index = "{i}" }}\n\n'
            for i, n in enumerate(nodes, start=1)
        )
        listen = [f"tcp://127.0.0.1:{port}"]
        if unix_socket is not None:
            listen.append(f"unix://{unix_socket}")
        config = workdir / "config.toml"
        config.write_text(
            f'[server]\nlisten = {json.dumps(listen)}\nname = "rig-proxy"\n\n'
            f'[storage]\nurl = "{storage_url}"\nprefix = "{prefix}"\n\n'
            f"[health]\ninterval = 1.0\n\n{extra_toml}\n{node_tables}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMPROXY_")}
        with open(workdir / "proxy.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "swarmproxy", "serve", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        proxy = cls(workdir, port, process, prefix)
        proxy._wait_ready()
        return proxy

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.request("GET", "/_ping")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ProxyStartError(f"swarmproxy did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(
        self,
        *args: str,
        input: bytes | str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return run_docker(
            self.address, self.workdir / "cli", *args, input=input, check=check, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        """A plain HTTP request; JSON-encodes a non-bytes body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
            all_headers = {"Content-Type": "application/json"} if data is not None else {}
            all_headers.update(headers or {})
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, payload = self.request(method, path, body)
        return status, json.loads(payload) if payload else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
