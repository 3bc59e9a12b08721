"""A real swarmproxy process in front of the rig's nodes, driven with the docker CLI and HTTP.

`ServeProcess` is the one launcher of `python -m swarmproxy serve`, for the tests' `Proxy`
and for the benchmarks (bench/targets.py, bench/scale.py): a config written for a port of
its own, the process's output in a log file, a wait until it is ready, and a stop.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import pathlib
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self

from swarmproxy.local_nodes import DockerNode, free_port, run_docker

log = logging.getLogger("tests.rig.proxy")

READY_TIMEOUT = 30.0
# Longer than the proxy's default shutdown_timeout (10 s): a proxy still finishing its
# streams is not killed while it would have exited on its own.
STOP_TIMEOUT = 15.0
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


def node_toml(name: str, address: str, keys: str = "") -> str:
    """A [[nodes]] table; `keys` adds lines to it."""
    return f"[[nodes]]\naddress = {json.dumps(address)}\nname = {json.dumps(name)}\n{keys}\n"


def node_table(node: DockerNode, index: int, tls: Mapping[str, str] | None) -> str:
    """A rig node's [[nodes]] table, with labels. A node started with TLS gets its CA and
    client certificate files, unless `tls` gives its TLS keys (inline PEMs, a wrong CA…)."""
    if tls is None and node.tls is not None:
        tls = {
            "tls_ca": str(node.tls.ca),
            "tls_cert": str(node.tls.client_cert),
            "tls_key": str(node.tls.client_key),
        }
    keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (tls or {}).items())
    labels = f'labels = {{ rig = "yes", index = "{index}" }}\n'
    return node_toml(node.name, node.tcp_address, labels + keys)


@dataclass(frozen=True)
class ServeConfig:
    """What a config file says, but for the port: [server] and [storage] with extra keys,
    whole `sections`, and the [[nodes]] tables last (tests that rewrite the nodes on disk
    look for them there)."""

    name: str
    nodes: str
    storage_url: str = "memory://"
    prefix: str = "swarmproxy:"
    # Listeners besides tcp://127.0.0.1:PORT.
    listen: Sequence[str] = ()
    server: str = ""
    storage: str = ""
    sections: str = ""

    def toml(self, port: int) -> str:
        listen = [f"tcp://127.0.0.1:{port}", *self.listen]
        return (
            f"[server]\nlisten = {json.dumps(listen)}\nname = {json.dumps(self.name)}\n"
            f"{self.server}\n"
            f"[storage]\nurl = {json.dumps(self.storage_url)}\n"
            f"prefix = {json.dumps(self.prefix)}\n{self.storage}\n"
            f"{self.sections}\n{self.nodes}"
        )


def allow_open_files(count: int) -> int:
    """Raises this process's soft limit of open files to `count`, and the hard one with it
    when allowed (as root), else as far as the hard limit goes; the soft limit it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
        return count
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return count


def own_env() -> dict[str, str]:
    """This environment without SWARMPROXY_* variables, which would override the config
    a rig proxy is given."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SWARMPROXY_")}


class ServeProcess:
    """A `python -m swarmproxy serve` process, started on construction: its config in
    WORKDIR/config.toml, its output in WORKDIR/proxy.log. `own_session` keeps a Ctrl-C in
    the terminal from reaching it (whoever started it stops it in order); `open_files`
    raises its limit of open files (RLIMIT_NOFILE) to at least that."""

    def __init__(
        self,
        workdir: pathlib.Path,
        config: ServeConfig,
        tls: ListenerTLS | None = None,
        own_session: bool = False,
        open_files: int | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log_path = workdir / "proxy.log"
        config_path = workdir / "config.toml"
        config_path.write_text(config.toml(self.port))
        # When the process was spawned (time.monotonic()), for start-up times.
        self.started = time.monotonic()
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swarmproxy", "serve", "--config", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=own_env(),
                start_new_session=own_session,
                preexec_fn=None if open_files is None else partial(allow_open_files, open_files),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Waits until `ready()` holds (an OSError or HTTPException from it: not yet). If the
        process exits first or the time runs out, stops it and raises ProxyStartError with
        the tail of its log."""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if ready():
                        return
                time.sleep(0.1)
            code = self.process.poll()
            why = f"not ready in {timeout:g}s" if code is None else f"exited with {code}"
            raise ProxyStartError(f"swarmproxy in {self.workdir} {why}:\n{self.log_tail()}")
        except BaseException:
            # Nothing else holds a proxy that did not start (or a Ctrl-C cut short) to stop it.
            self.stop()
            raise

    def answers_ping(self) -> bool:
        return self.request("GET", "/_ping")[0] == 200

    def wait_logged(self, text: str, timeout: float = 5.0) -> None:
        """Waits for `text` in the log: the proxy writes its lines from a thread of their own,
        a moment after what they tell."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not logged:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

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

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, and SIGKILL if it has not exited after `timeout` seconds."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("swarmproxy pid %d ignored SIGTERM for %g s: killed", self.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Proxy(ServeProcess):
    """A rig proxy for the tests: labelled nodes, an admin API, health checks every second,
    and the docker CLI and HTTP against it."""

    def __init__(
        self,
        workdir: pathlib.Path,
        config: ServeConfig,
        tls: ListenerTLS | None,
        open_files: int | None,
        admin_port: int,
    ) -> None:
        super().__init__(workdir, config, tls=tls, open_files=open_files)
        self.prefix = config.prefix
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
        admin_port = free_port()
        config = ServeConfig(
            name="rig-proxy",
            nodes="".join(
                node_table(n, i, (node_tls or {}).get(n.name)) for i, n in enumerate(nodes, start=1)
            ),
            storage_url=storage_url,
            prefix=prefix,
            listen=[] if unix_socket is None else [f"unix://{unix_socket}"],
            server=server_toml,
            storage=storage_toml,
            sections=(
                f'[admin]\nlisten = ["tcp://127.0.0.1:{admin_port}"]\ntoken = "{ADMIN_TOKEN}"\n\n'
                f"{tls.toml() if tls else ''}[health]\ninterval = 1.0\n\n{extra_toml}"
            ),
        )
        proxy = cls(workdir, config, tls, open_files, admin_port)
        proxy.wait_ready(proxy.answers_ping)
        return proxy

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
            env=own_env(),
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


@contextlib.contextmanager
def serving(workdir: pathlib.Path, nodes: Sequence[DockerNode], **options: Any) -> Iterator[Proxy]:
    """A proxy of a test's own (`options` go to Proxy.start), stopped on the way out with
    every node emptied, as the session's proxy leaves them."""
    proxy = Proxy.start(workdir, nodes, **options)
    try:
        yield proxy
    finally:
        proxy.stop()
        for node in nodes:
            node.remove_all_containers()
