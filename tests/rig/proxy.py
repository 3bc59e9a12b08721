"""A real swarmproxy process in front of the rig's nodes, driven with the docker CLI and HTTP."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmproxy.local_nodes import DockerNode, free_port, run_docker

READY_TIMEOUT = 30.0
# Every rig proxy's admin API asks for this bearer token.
ADMIN_TOKEN = "rig-admin-token"


class ProxyStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ListenerTLS:
    """The proxy's [server.tls], and the DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem) that the
    rig's own calls use: it must hold a certificate the proxy accepts."""

    cert: pathlib.Path
    key: pathlib.Path
    client_ca: pathlib.Path | None
    cert_path: pathlib.Path

    def toml(self) -> str:
        keys = {"cert": self.cert, "key": self.key, "client_ca": self.client_ca}
        lines = [f"{k} = {json.dumps(str(v))}\n" for k, v in keys.items() if v is not None]
        return "[server.tls]\n" + "".join(lines) + "\n"

    def cli_env(self) -> dict[str, str]:
        return {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(self.cert_path)}

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert_path / "ca.pem"))
        context.load_cert_chain(self.cert_path / "cert.pem", self.cert_path / "key.pem")
        return context


def node_table(node: DockerNode, index: int, tls: Mapping[str, str] | None) -> str:
    """A [[nodes]] table. A node started with TLS gets its CA and client certificate files,
    unless `tls` gives its TLS keys (inline PEMs, a wrong CA…)."""
    if tls is None and node.tls is not None:
        tls = {
            "tls_ca": str(node.tls.ca),
            "tls_cert": str(node.tls.client_cert),
            "tls_key": str(node.tls.client_key),
        }
    keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (tls or {}).items())
    return (
        f'[[nodes]]\naddress = "{node.tcp_address}"\nname = "{node.name}"\n'
        f'labels = {{ rig = "yes", index = "{index}" }}\n{keys}\n'
    )


def allow_open_files(count: int) -> None:
    """Raises this process's soft limit of open files to `count`, and the hard one with it
    when allowed (as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        return
    if hard != resource.RLIM_INFINITY and hard < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


class Proxy:
    def __init__(
        self,
        workdir: pathlib.Path,
        port: int,
        process: subprocess.Popen[bytes],
        prefix: str,
        tls: ListenerTLS | None = None,
        admin_port: int = 0,
    ) -> None:
        self.workdir = workdir
        self.prefix = prefix
        self.port = port
        self.process = process
        self.tls = tls
        self.address = f"tcp://127.0.0.1:{port}"
        self.log_path = workdir / "proxy.log"
        self.admin_address = f"tcp://127.0.0.1:{admin_port}"

    @classmethod
    def start(
        cls,
        workdir: pathlib.Path,
        nodes: Sequence[DockerNode],
        storage_url: str = "memory://",
        prefix: str = "swarmproxy:",
        extra_toml: str = "",
        unix_socket: pathlib.Path | None = None,
        tls: ListenerTLS | None = None,
        node_tls: Mapping[str, Mapping[str, str]] | None = None,
        server_toml: str = "",
        open_files: int | None = None,
        storage_toml: str = "",
    ) -> Proxy:
        """`tls` puts the TCP listener behind TLS; `node_tls` gives, by node name, TLS keys
        for [[nodes]] other than those of the node's own DaemonTLS (see node_table).
        `server_toml` adds keys to [server], `storage_toml` to [storage]; `open_files`
        raises the process's limit of open files (RLIMIT_NOFILE) to at least that, for tests
        that hold many connections."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        node_tables = "".join(
            node_table(n, i, (node_tls or {}).get(n.name)) for i, n in enumerate(nodes, start=1)
        )
        listen = [f"tcp://127.0.0.1:{port}"]
        admin_port = free_port()
        if unix_socket is not None:
            listen.append(f"unix://{unix_socket}")
        config = workdir / "config.toml"
        config.write_text(
            f'[server]\nlisten = {json.dumps(listen)}\nname = "rig-proxy"\n{server_toml}\n'
            f'[admin]\nlisten = ["tcp://127.0.0.1:{admin_port}"]\ntoken = "{ADMIN_TOKEN}"\n\n'
            f'[storage]\nurl = "{storage_url}"\nprefix = "{prefix}"\n{storage_toml}\n'
            f"{tls.toml() if tls else ''}"
            f"[health]\ninterval = 1.0\n\n{extra_toml}\n{node_tables}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMPROXY_")}
        with open(workdir / "proxy.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "swarmproxy", "serve", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=None if open_files is None else (lambda: allow_open_files(open_files)),
            )
        proxy = cls(workdir, port, process, prefix, tls, admin_port)
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

    def wait_logged(self, text: str, timeout: float = 5.0) -> None:
        """Waits for `text` in the log: the proxy writes its lines from a thread of their own,
        a moment after what they tell."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log_tail()}"
            time.sleep(0.05)

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
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI against the proxy (with the rig's certificate when it serves TLS);
        `env` adds to or overrides its environment."""
        full_env = {**(self.tls.cli_env() if self.tls else {}), **(env or {})}
        return run_docker(
            self.address,
            self.workdir / "cli",
            *args,
            input=input,
            check=check,
            timeout=timeout,
            env=full_env,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        """An HTTP request (HTTPS with the rig's certificate when the proxy serves TLS);
        JSON-encodes a non-bytes body."""
        conn = (
            http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            if self.tls is None
            else http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=self.tls.client_context()
            )
        )
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

    def node_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`swarmproxy node …` against this proxy's admin API."""
        return self.admin_cli("node", *args, check=check)

    def admin_cli(
        self, command: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`swarmproxy COMMAND …` (one that talks to the admin API) against this proxy."""
        result = subprocess.run(
            [
                *(sys.executable, "-m", "swarmproxy", command),
                *("--admin", self.admin_address, "--token", ADMIN_TOKEN, *args),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("SWARMPROXY_")},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"swarmproxy {command} {' '.join(args)}: {result.stderr}")
        return result

    def admin(
        self, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN
    ) -> tuple[int, Any]:
        """A request to the admin API; its status and JSON answer."""
        host, _, port = self.admin_address.removeprefix("tcp://").rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, json.loads(payload) if payload else None
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
