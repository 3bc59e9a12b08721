"""Local ``dockerd`` nodes, for `swarmproxy dev-cluster` and the end-to-end tests.

Every node is a private dockerd (with its own containerd) living under a short
directory in /tmp, listening on a unix socket and on 127.0.0.1:PORT (with
``DaemonTLS``: TLS that requires a client certificate), and holding an
offline-built ``busybox:latest`` image.  All daemons on this host share
/etc/docker/key.json and so report the same ID and Name: a node is identified by
its address and by the name the rig gives it (node-1, node-2, ...).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import http.client
import io
import json
import logging
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = [
    "DaemonTLS",
    "DockerCommandError",
    "DockerNode",
    "DockerdStartError",
    "start_nodes",
    "stop_nodes",
]

log = logging.getLogger(__name__)

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
# /usr/local/bin comes first on PATH and holds the modern CLI; Debian's
# docker.io also ships an old /usr/bin/docker that we do not want.
DOCKER_CLI = shutil.which("docker") or "/usr/local/bin/docker"
BUSYBOX = "/bin/busybox"
IMAGE = "busybox:latest"

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_START_ATTEMPTS = 3

_APPLETS = (
    *("sh", "echo", "cat", "sleep", "true", "false", "ls", "env", "id", "hostname"),
    *("top", "ps", "wc", "head", "tail", "dd", "yes", "printf", "mkdir", "rm", "touch"),
    *("date", "seq", "tr", "grep", "sed", "test", "[", "[[", "kill", "pwd", "uname"),
    *("cut", "sort", "uniq", "cp", "mv", "ln", "chmod", "stat", "timeout", "tee"),
    *("base64", "md5sum", "sha256sum", "xargs", "find", "du", "df", "nc", "wget", "ip"),
    *("ifconfig", "nslookup", "ping", "which", "whoami", "basename", "dirname", "expr"),
    *("awk", "mount"),
)

# Inherited DOCKER_* variables (a developer's context, TLS settings, pinned API
# version) would silently redirect or break the CLI, so they are dropped.
_CLI_ENV_DROP = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_API_VERSION",
    "DOCKER_CONFIG",
    "DOCKER_DEFAULT_PLATFORM",
)


class DockerCommandError(subprocess.CalledProcessError):
    """A docker CLI call failed; the message carries the full output."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\n--- stdout ---\n{self.stdout or ''}"
            f"\n--- stderr ---\n{self.stderr or ''}"
        )


class DockerdStartError(RuntimeError):
    """A dockerd did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class DaemonTLS:
    """PEM files for a dockerd serving its TCP address with ``--tlsverify``: its own
    certificate, and the CA its clients' certificates must come from."""

    ca: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path
    # A client certificate from `ca`: the rig's own readiness pings need one.
    client_cert: pathlib.Path
    client_key: pathlib.Path

    def dockerd_flags(self) -> list[str]:
        return [
            "--tlsverify",
            f"--tlscacert={self.ca}",
            f"--tlscert={self.cert}",
            f"--tlskey={self.key}",
        ]

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(self.client_cert, self.client_key)
        return context


class _PortInUse(DockerdStartError):
    pass


_STACK_DUMP_RE = re.compile(rb"stack dump written to (/tmp/containerd\.\d+\.stacks\.log)")

_running: set[DockerNode] = set()
_running_lock = threading.Lock()


def cli_env(
    host: str, config_dir: pathlib.Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment that points a docker CLI at `host` and nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in _CLI_ENV_DROP}
    env["DOCKER_HOST"] = host
    env["DOCKER_CONFIG"] = str(config_dir)
    env["DOCKER_CLI_HINTS"] = "false"
    if extra:
        env.update(extra)
    return env


def run_docker(
    host: str,
    config_dir: pathlib.Path,
    *args: str,
    input: bytes | str | None = None,
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against `host`; DockerCommandError carries its output."""
    cmd = [DOCKER_CLI, *args]
    # Always run in binary mode so callers can pipe raw bytes (image tars)
    # while still getting text back.
    data = input.encode() if isinstance(input, str) else input
    raw = subprocess.run(
        cmd,
        input=data,
        stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        env=cli_env(host, config_dir, env),
        check=False,
    )
    out = raw.stdout.decode("utf-8", "replace")
    err = raw.stderr.decode("utf-8", "replace")
    if check and raw.returncode != 0:
        raise DockerCommandError(raw.returncode, cmd, out, err)
    return subprocess.CompletedProcess(cmd, raw.returncode, out, err)


class DockerNode:
    """One running dockerd.  Create them with :func:`start_nodes`."""

    name: str
    workdir: pathlib.Path
    port: int
    tcp_address: str
    unix_address: str
    pid: int

    def __init__(
        self,
        name: str,
        workdir: pathlib.Path,
        port: int,
        bridge: str | None = None,
        remove_parent: pathlib.Path | None = None,
        tls: DaemonTLS | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.port = port
        self.tls = tls
        self.tcp_address = f"tcp://127.0.0.1:{port}"
        self.socket_path = workdir / "d.sock"
        self.unix_address = f"unix://{self.socket_path}"
        self.log_path = workdir / "dockerd.log"
        self.pid = 0
        self._bridge = bridge
        # Set when the rig created the base dir: the last node to stop removes it.
        self._remove_parent = remove_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False

    def __repr__(self) -> str:
        return f"DockerNode({self.name!r}, {self.tcp_address!r}, pid={self.pid})"

    # -- docker CLI ---------------------------------------------------------

    def cli_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment that points a docker CLI at this node and nothing else."""
        return cli_env(self.unix_address, self.workdir / "cli", extra)

    def docker(
        self,
        *args: str,
        input: bytes | str | None = None,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_docker(
            self.unix_address,
            self.workdir / "cli",
            *args,
            input=input,
            check=check,
            timeout=timeout,
            env=env,
        )

    def container_ids(self, all: bool = True) -> set[str]:
        args = ["ps", "-q", "--no-trunc"]
        if all:
            args.append("-a")
        return set(self.docker(*args).stdout.split())

    def remove_all_containers(self) -> None:
        ids: set[str] = set()
        for _ in range(5):
            ids = self.container_ids()
            if not ids:
                return
            # check=False: a container another actor is already removing makes
            # rm fail although the end state is the one we want; re-list instead.
            self.docker("rm", "-f", "-v", *sorted(ids), check=False, timeout=120)
        ids = self.container_ids()
        if ids:
            raise RuntimeError(f"{self.name}: could not remove containers {sorted(ids)}")

    # -- lifecycle ----------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def crash(self) -> None:
        """Kill the daemon outright (SIGKILL), with its containerd and containers, as a
        crash of the host's Docker would: its data stays, and `relaunch()` brings it back
        (a dockerd cannot take over the containerd of one killed this way)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._kill_leftovers()
        # A killed containerd may linger as a zombie (nobody here reaps orphans), and
        # dockerd would take its pid file's word that it still runs, and wait on it.
        (self.workdir / "x" / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def relaunch(self) -> None:
        """Start the daemon again on its data, port and paths, after `crash()`."""
        self._launch()
        self._wait_ready()

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "cli").mkdir(exist_ok=True)
        # An explicit empty config keeps a host /etc/docker/daemon.json from
        # clashing with our command-line flags.
        config = self.workdir / "daemon.json"
        config.write_text("{}\n")
        cmd = [
            DOCKERD,
            f"--config-file={config}",
            f"--data-root={self.workdir / 'data'}",
            f"--exec-root={self.workdir / 'x'}",
            f"--pidfile={self.workdir / 'pid'}",
            f"--host={self.unix_address}",
            f"--host={self.tcp_address}",
            "--iptables=false",
            f"--bridge={self._bridge or 'none'}",
            "--storage-driver=vfs",
            "--shutdown-timeout=1",
            *(self.tls.dockerd_flags() if self.tls else []),
        ]
        with self.log_path.open("ab") as logf:
            # A new session keeps a Ctrl-C aimed at pytest from hitting the
            # daemons directly; atexit/stop() shut them down in order instead.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._proc.pid
        with _running_lock:
            _running.add(self)
        log.info("%s: started dockerd pid %d on %s", self.name, self.pid, self.tcp_address)

    def _ping(self) -> bool:
        conn = (
            http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            if self.tls is None
            else http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=2, context=self.tls.client_context()
            )
        )
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = self.log_tail()
                cls = _PortInUse if "address already in use" in tail else DockerdStartError
                raise cls(f"{self.name}: dockerd exited with {rc} during startup\n{tail}")
            if self._ping():
                return
            if time.monotonic() > deadline:
                raise DockerdStartError(
                    f"{self.name}: dockerd did not answer /_ping on {self.tcp_address} "
                    f"within {timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _load_image(self, image_tar: bytes) -> None:
        self.docker("load", input=image_tar, timeout=120)

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            try:
                self._terminate()
            finally:
                with _running_lock:
                    _running.discard(self)
                self._cleanup_workdir()
        log.info("%s: stopped", self.name)

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # dockerd 20.10 ignores --shutdown-timeout for containers: on SIGTERM
            # it gives each running one its own StopTimeout (10 s by default).
            # Everything is thrown away anyway, so kill them first.
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                running = self.docker("ps", "-q", "--no-trunc", check=False, timeout=10)
                if running.stdout.split():
                    self.docker("kill", *running.stdout.split(), check=False, timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s: dockerd ignored SIGTERM for %.0fs, killing", self.name, STOP_TIMEOUT
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        # A cleanly stopped dockerd takes its containerd, shims and containers
        # with it; after a SIGKILL (or a crash) they are orphans, recognisable by
        # our paths on their command line or by our container IDs in their cgroup.
        leftovers = self._kill_leftovers()
        if leftovers:
            log.warning("%s: killed leftover processes %s", self.name, leftovers)

    def _kill_leftovers(self) -> list[int]:
        """Kill the processes of this node that outlived its dockerd; their pids."""
        leftovers = _processes_of(self.workdir)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(leftovers, 5.0)
        return leftovers

    def _remove_containerd_stack_dumps(self) -> None:
        # Under CPU load dockerd 20.10 may judge its fresh containerd
        # unresponsive during startup, SIGUSR1 it (a stack dump lands in
        # /tmp/containerd.PID.stacks.log) and start another one.  Harmless, but
        # the dumps would pile up in /tmp, so delete the ones this node caused.
        try:
            text = self.log_path.read_bytes()
        except OSError:
            return
        for match in _STACK_DUMP_RE.finditer(text):
            path = pathlib.Path(os.fsdecode(match.group(1)))
            log.info("%s: containerd was restarted by dockerd; removing %s", self.name, path)
            with contextlib.suppress(OSError):
                path.unlink()

    def _cleanup_workdir(self) -> None:
        self._remove_containerd_stack_dumps()
        _unmount_under(self.workdir)
        for _ in range(3):
            shutil.rmtree(self.workdir, ignore_errors=True)
            if not self.workdir.exists():
                break
            time.sleep(0.2)
            _unmount_under(self.workdir)
        else:
            log.warning("%s: could not remove %s", self.name, self.workdir)
        if self._remove_parent is not None:
            # Only succeeds once the last node sharing the base dir is gone.
            with contextlib.suppress(OSError):
                self._remove_parent.rmdir()


# -- helpers ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it and the port is released before returning, so a caller racing
    another process for it must be ready to retry.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    taken = set(avoid)
    ports: list[int] = []
    # The kernel may hand the same just-closed port out twice in a row.
    for _ in range(1000):
        if len(ports) == count:
            break
        port = free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports


@functools.cache
def busybox_rootfs_tar() -> bytes:
    """A minimal root filesystem: static busybox plus applet symlinks."""
    listed = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    available = set(listed.stdout.split())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "root", "home", "var", "usr", "proc", "sys", "dev"):
            add_dir(d, 0o700 if d == "root" else 0o755)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", pathlib.Path(BUSYBOX).read_bytes(), 0o755)
        for applet in _APPLETS:
            if applet in available:
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                info.mode = 0o777
                tar.addfile(info)
        # `docker run --user nobody` and `id` need name lookups to work.
        add_file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        )
        add_file("etc/group", b"root:x:0:\nnobody:x:65534:\n")
    return buf.getvalue()


@dataclass(frozen=True)
class ImageParts:
    """An image as a registry or `docker save` holds it: one layer and its config."""

    layer: bytes
    config: bytes

    @property
    def diff_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.layer).hexdigest()

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()


def image_parts(layer: bytes, cmd: Sequence[str] = ("/bin/sh",)) -> ImageParts:
    """An image whose ID depends on nothing but its content: every node that loads it holds
    the same image ID, as when all of them pulled it from one registry."""
    created = "2026-01-01T00:00:00Z"
    config = {
        "architecture": _ARCHITECTURES.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": created,
        "config": {"Cmd": list(cmd), "Env": [f"PATH={_PATH}"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created, "created_by": "swarmproxy local_nodes"}],
    }
    parts = ImageParts(layer, b"")
    config["rootfs"] = {"type": "layers", "diff_ids": [parts.diff_id]}
    return ImageParts(layer, json.dumps(config, sort_keys=True).encode())


def image_tar(parts: ImageParts, tags: Sequence[str]) -> bytes:
    """`parts` in the format of `docker save`, for `docker load`."""
    digest = parts.id.removeprefix("sha256:")
    manifest = [{"Config": f"{digest}.json", "RepoTags": list(tags), "Layers": ["layer/layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            ("manifest.json", json.dumps(manifest).encode()),
            (f"{digest}.json", parts.config),
            ("layer/layer.tar", parts.layer),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@functools.cache
def busybox_image_tar() -> bytes:
    return image_tar(image_parts(busybox_rootfs_tar()), [IMAGE])


def _processes_of(workdir: pathlib.Path) -> list[int]:
    marker = os.fsencode(workdir) + b"/"
    containers = workdir / "data" / "containers"
    try:
        cids = [p.name.encode() for p in containers.iterdir()]
    except OSError:
        cids = []
    me = os.getpid()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
            if marker in cmdline:
                found.append(int(entry.name))
                continue
            if cids:
                with open(f"/proc/{entry.name}/cgroup", "rb") as f:
                    cgroup = f.read()
                if any(cid in cgroup for cid in cids):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # Field 3, after the parenthesised command name, is the state; a zombie has
    # already released everything.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _unmount_under(path: pathlib.Path) -> None:
    prefix = str(path)
    mounts: list[str] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].encode().decode("unicode_escape")
                if point == prefix or point.startswith(prefix + "/"):
                    mounts.append(point)
    except OSError:
        return
    # Deepest first so a parent is never busy because of a child mount.
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# -- public API ---------------------------------------------------------------


def start_nodes(
    count: int,
    base: pathlib.Path | None = None,
    bridge: str | Sequence[str] | None = None,
    tls: DaemonTLS | None = None,
) -> list[DockerNode]:
    """Start ``count`` dockerds concurrently, each with ``busybox:latest`` loaded (and, with
    `tls`, their TCP address behind TLS; their unix sockets stay plain). `bridge` is one
    bridge for all of them, or one each: nodes on one host need their own, with their own
    subnets, for their containers' addresses not to clash."""
    if count < 1:
        raise ValueError("count must be >= 1")
    bridges = [bridge] * count if bridge is None or isinstance(bridge, str) else list(bridge)
    if len(bridges) != count:
        raise ValueError(f"{len(bridges)} bridges for {count} nodes")
    remove_parent: pathlib.Path | None = None
    if base is None:
        # Short on purpose: unix socket paths (ours and containerd's under the
        # exec-root) must stay below ~107 bytes.
        base = pathlib.Path(tempfile.mkdtemp(prefix="sp-", dir="/tmp"))
        remove_parent = base
    # containerd's longest socket lives under the exec-root; past ~107 bytes
    # dockerd fails with an obscure bind error, so refuse early and clearly.
    longest = base / f"n{count}" / "x" / "containerd" / "containerd.sock.ttrpc"
    if len(os.fsencode(longest)) > 100:
        raise ValueError(f"base dir {base} is too long for unix socket paths; use a short one")
    image = busybox_image_tar()
    started: list[DockerNode] = []
    started_lock = threading.Lock()
    used_ports: set[int] = set()
    ports = _free_ports(count)
    used_ports.update(ports)

    def boot(index: int, port: int) -> DockerNode:
        for attempt in range(_START_ATTEMPTS):
            node = DockerNode(
                f"node-{index}",
                base / f"n{index}",
                port,
                bridges[index - 1],
                remove_parent=remove_parent,
                tls=tls,
            )
            with started_lock:
                started.append(node)
            launched = time.monotonic()
            node._launch()
            try:
                node._wait_ready()
                log.info("%s: ready in %.1fs", node.name, time.monotonic() - launched)
                break
            except _PortInUse:
                # Someone grabbed the port between our probe and dockerd's bind.
                if attempt == _START_ATTEMPTS - 1:
                    raise
                node.stop()
                with started_lock:
                    started.remove(node)
                    port = _free_ports(1, used_ports)[0]
                    used_ports.add(port)
        loading = time.monotonic()
        log.info("%s: loading %s", node.name, IMAGE)
        node._load_image(image)
        log.info("%s: %s loaded in %.1fs", node.name, IMAGE, time.monotonic() - loading)
        return node

    log.info("starting %d dockerd nodes under %s", count, base)
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="dockerd-start") as pool:
            futures = [pool.submit(boot, i + 1, port) for i, port in enumerate(ports)]
            errors = [exc for f in futures if (exc := f.exception()) is not None]
    except BaseException:
        # Interrupted (Ctrl-C, pytest-timeout) while waiting: the daemons that
        # did start must not outlive the failed call.
        stop_nodes(started)
        raise
    if errors:
        stop_nodes(started)
        if remove_parent is not None:
            shutil.rmtree(remove_parent, ignore_errors=True)
        if len(errors) == 1:
            raise errors[0]
        raise BaseExceptionGroup(f"{len(errors)} of {count} dockerd nodes failed to start", errors)
    nodes = [f.result() for f in futures]
    log.info("started %d dockerd nodes in %.1fs under %s", count, time.monotonic() - t0, base)
    return nodes


def stop_nodes(nodes: Iterable[DockerNode]) -> None:
    """Stop nodes concurrently; one node failing to stop does not stop the others."""
    _stop_all(list(nodes), concurrently=True)


def _stop_all(nodes: list[DockerNode], concurrently: bool) -> None:
    def stop_one(node: DockerNode) -> None:
        try:
            node.stop()
        except Exception:
            log.exception("%s: failed to stop", node.name)

    if concurrently and len(nodes) > 1:
        threads = [
            threading.Thread(target=stop_one, args=(n,), name=f"stop-{n.name}") for n in nodes
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for node in nodes:
            stop_one(node)


@atexit.register
def _stop_leftover_nodes() -> None:
    # A crashed or interrupted test run must not leave daemons behind.  Threads
    # cannot be relied on this late in interpreter shutdown, hence sequential.
    with _running_lock:
        nodes = list(_running)
    if nodes:
        log.warning("stopping dockerd nodes left running at exit: %s", nodes)
    _stop_all(nodes, concurrently=False)
