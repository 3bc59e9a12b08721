"""SIMULATED Docker Engine nodes, for swarmproxy's scale benchmark.

Nothing here is a Docker daemon. One process serves many simulated nodes: each node is its
own listening socket on 127.0.0.1 (its own port), so that swarmproxy sees N distinct
`tcp://` daemons, while a single aiohttp application answers all of them and tells them
apart by the local port a request arrived on. Each simulated node answers the part of the
Engine API (v1.41, as dockerd 20.10 answers it) that swarmproxy uses on a node at join, in
its monitoring and for `docker ps`, with bodies shaped as dockerd 20.10.24 sends them:

- `GET`/`HEAD /_ping`, `GET /version`, `GET /info`;
- `GET /containers/json` (`all`, `limit`, `filters`), `POST /containers/create`,
  `GET /containers/{id}/json`, `POST /containers/{id}/start|stop|kill|restart|wait`,
  `DELETE /containers/{id}`;
- `GET /images/json`, `GET /images/{name}/json` (`busybox:latest` is on every node);
- `GET /volumes`, `GET /volumes/{name}`, `GET /networks`, `GET /networks/{id}`;
- `GET /events`: held open; the simulated node's own container changes are sent on it.

Anything else gets the daemon's `404 {"message": "page not found"}` and is logged, so that
an endpoint swarmproxy starts to call shows up. Every answer waits a small random latency
first (`latency_ms`); an event loop's timers are about 1 ms coarse, so a wait asked below
that lasts up to about 1 ms when the simulator is idle.

Run standalone as `python -m bench.sim --nodes 100`: it writes one JSON line with the
simulated nodes' names and addresses on stdout, then serves them until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import re
import resource
import signal
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

# A daemon's words and a standalone daemon's `Swarm`, as swarmproxy renders them.
from swarmproxy.cluster.info import INACTIVE_SWARM
from swarmproxy.cluster.status_text import human_duration

log = logging.getLogger("bench.sim")

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
ENGINE_VERSION = "20.10.24"
SERVER = f"Docker/{ENGINE_VERSION} (linux)"
KERNEL = "6.1.0-18-amd64"
# What every answer of a matched route carries, as dockerd's version middleware adds it;
# its router's own 404 (an unknown path) carries none of them.
DAEMON_HEADERS = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": SERVER,
}
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}

# The one image every simulated node holds.
BUSYBOX_TAG = "busybox:latest"
BUSYBOX_ID = "sha256:" + "7cfbbec8963d8f13e6c70416d6592e1cc10f47a348131290a55d43c3acab3fb9"
BUSYBOX_DIGEST = "busybox@sha256:3fbc632167424a6d997e74f52b878d7cc478225cffac6bc977eedfe51c7f4e79"
BUSYBOX_CREATED = 1_704_067_200  # 2024-01-01T00:00:00Z
BUSYBOX_SIZE = 4_261_550
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Words for the names the daemon makes up (`brave_turing`); a simulation's own lists.
_ADJECTIVES = ("brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry",
               "noble", "proud", "quiet", "sharp", "tender", "vivid", "witty")  # fmt: skip
_SURNAMES = ("babbage", "curie", "darwin", "euler", "faraday", "gauss", "hopper", "kepler",
             "lovelace", "maxwell", "noether", "pascal", "shannon", "turing", "volta")  # fmt: skip

_VERSIONED = re.compile(r"^/v(\d+(?:\.\d+)?)(/.*)$")
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
# What dockerd accepts as `docker ps` filters; the simulator applies the common ones.
_PS_FILTERS = frozenset(("ancestor", "before", "expose", "exited", "health", "id", "isolation",
                         "is-task", "label", "name", "network", "publish", "since", "status",
                         "volume"))  # fmt: skip


class APIError(Exception):
    """A daemon's refusal: its status and `{"message": …}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _rfc3339(seconds: float) -> str:
    """As Go writes time.Time in JSON: nanoseconds, trailing zeros trimmed, `Z`."""
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    stamp = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _true(value: str | None) -> bool:
    # dockerd's httputils.BoolValue.
    return value is not None and value.strip().lower() not in ("", "0", "no", "false", "none")


def _image_matches(ref: str) -> bool:
    """Whether `ref` (a name, a name with tag or digest, or an ID or ID prefix) names the
    simulated busybox image."""
    ref = ref.strip()
    hexpart = ref.removeprefix("sha256:")
    # An ID or ID prefix first; a hex-looking name that is no prefix is taken as a name.
    if hexpart and re.fullmatch(r"[0-9a-f]+", hexpart) and BUSYBOX_ID[7:].startswith(hexpart):
        return True
    name = ref
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        name = name.removeprefix(prefix)
    name = name.removeprefix("library/")
    if "@" in name:
        return name == BUSYBOX_DIGEST
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name == BUSYBOX_TAG


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """`filters` as dockerd reads it: `{"k": ["v"]}`, or the older `{"k": {"v": true}}`."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as e:
        raise APIError(400, f"invalid filter: {e}") from None
    if not isinstance(decoded, dict):
        raise APIError(400, "invalid filter: not an object")
    filters: dict[str, list[str]] = {}
    for key, values in decoded.items():
        if isinstance(values, dict):
            filters[key] = [str(v) for v, on in values.items() if on]
        elif isinstance(values, list):
            filters[key] = [str(v) for v in values]
        else:
            raise APIError(400, f"invalid filter: {key}")
    return filters


@dataclass
class SimContainer:
    """A container as a simulated node remembers it."""

    id: str
    name: str
    image: str
    cmd: list[str]
    created: float
    state: str = "created"
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    host_config: dict[str, Any] = field(default_factory=dict)
    ip: str = ""

    def status(self, now: float) -> str:
        if self.state == "running":
            return f"Up {human_duration(now - self.started_at)}"
        if self.state == "exited":
            return f"Exited ({self.exit_code}) {human_duration(now - self.finished_at)} ago"
        return self.state.capitalize()

    def _network(self) -> dict[str, Any]:
        running = self.state == "running"
        return {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": None,
            "NetworkID": "",
            "EndpointID": self.id[:8] * 8 if running else "",
            "Gateway": "172.17.0.1" if running else "",
            "IPAddress": self.ip if running else "",
            "IPPrefixLen": 16 if running else 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": "02:42:ac:11:00:02" if running else "",
            "DriverOpts": None,
        }

    def summary(self, now: float) -> dict[str, Any]:
        """The container's entry in `GET /containers/json`."""
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "ImageID": BUSYBOX_ID,
            "Command": " ".join(self.cmd),
            "Created": int(self.created),
            "Ports": [],
            "Labels": dict(self.labels),
            "State": self.state,
            "Status": self.status(now),
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": {"bridge": self._network()}},
            "Mounts": [],
        }

    def inspect(self) -> dict[str, Any]:
        """`GET /containers/{id}/json`."""
        host_config: dict[str, Any] = {
            "Binds": None,
            "ContainerIDFile": "",
            "LogConfig": {"Type": "json-file", "Config": {}},
            "NetworkMode": "default",
            "PortBindings": None,
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
            "AutoRemove": False,
            "VolumeDriver": "",
            "VolumesFrom": None,
            "CapAdd": None,
            "CapDrop": None,
            "CgroupnsMode": "private",
            "Dns": None,
            "DnsOptions": None,
            "DnsSearch": None,
            "ExtraHosts": None,
            "GroupAdd": None,
            "IpcMode": "private",
            "Cgroup": "",
            "Links": None,
            "OomScoreAdj": 0,
            "PidMode": "",
            "Privileged": False,
            "PublishAllPorts": False,
            "ReadonlyRootfs": False,
            "SecurityOpt": None,
            "UTSMode": "",
            "UsernsMode": "",
            "ShmSize": 67_108_864,
            "ConsoleSize": [0, 0],
            "Isolation": "",
            "CpuShares": 0,
            "Memory": 0,
            "NanoCpus": 0,
            "CgroupParent": "",
            "BlkioWeight": 0,
            "CpuPeriod": 0,
            "CpuQuota": 0,
            "CpusetCpus": "",
            "CpusetMems": "",
            "Devices": None,
            "DeviceCgroupRules": None,
            "DeviceRequests": None,
            "MemoryReservation": 0,
            "MemorySwap": 0,
            "MemorySwappiness": None,
            "OomKillDisable": False,
            "PidsLimit": None,
            "Ulimits": None,
            "MaskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys"],
            "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        }
        host_config.update(self.host_config)
        running = self.state == "running"
        never = "0001-01-01T00:00:00Z"
        return {
            "Id": self.id,
            "Created": _rfc3339(self.created),
            "Path": self.cmd[0] if self.cmd else "",
            "Args": self.cmd[1:],
            "State": {
                "Status": self.state,
                "Running": running,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": self.pid if running else 0,
                "ExitCode": self.exit_code,
                "Error": "",
                "StartedAt": _rfc3339(self.started_at) if self.started_at else never,
                "FinishedAt": _rfc3339(self.finished_at) if self.finished_at else never,
            },
            "Image": BUSYBOX_ID,
            "ResolvConfPath": f"/var/lib/docker/containers/{self.id}/resolv.conf",
            "HostnamePath": f"/var/lib/docker/containers/{self.id}/hostname",
            "HostsPath": f"/var/lib/docker/containers/{self.id}/hosts",
            "LogPath": f"/var/lib/docker/containers/{self.id}/{self.id}-json.log",
            "Name": f"/{self.name}",
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "docker-default",
            "ExecIDs": None,
            "HostConfig": host_config,
            "GraphDriver": {"Data": None, "Name": "overlay2"},
            "Mounts": [],
            "Config": {
                "Hostname": self.id[:12],
                "Domainname": "",
                "User": "",
                "AttachStdin": False,
                "AttachStdout": False,
                "AttachStderr": False,
                "Tty": False,
                "OpenStdin": False,
                "StdinOnce": False,
                "Env": list(self.env),
                "Cmd": list(self.cmd),
                "Image": self.image,
                "Volumes": None,
                "WorkingDir": "",
                "Entrypoint": None,
                "OnBuild": None,
                "Labels": dict(self.labels),
            },
            "NetworkSettings": {
                "Bridge": "",
                "SandboxID": self.id[::-1] if running else "",
                "HairpinMode": False,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "Ports": {},
                "SandboxKey": f"/var/run/docker/netns/{self.id[:12]}" if running else "",
                "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None,
                "EndpointID": self.id[:8] * 8 if running else "",
                "Gateway": "172.17.0.1" if running else "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "IPAddress": self.ip if running else "",
                "IPPrefixLen": 16 if running else 0,
                "IPv6Gateway": "",
                "MacAddress": "02:42:ac:11:00:02" if running else "",
                "Networks": {"bridge": self._network()},
            },
        }


class SimulatedNode:
    """One simulated daemon: its containers, its event subscribers, its answers."""

    def __init__(
        self, index: int, port: int, rng: random.Random, names: set[str] | None = None
    ) -> None:
        self.index = index
        self.name = f"simnode-{index:04d}"
        self.port = port
        self.address = f"tcp://127.0.0.1:{port}"
        self.rng = rng
        # Distinct per simulated host, as real daemons on distinct hosts report.
        digest = f"{rng.getrandbits(192):048X}"
        self.daemon_id = ":".join(digest[i : i + 4] for i in range(0, 48, 4))
        self.started = time.time()
        self.containers: dict[str, SimContainer] = {}
        # Made-up names are drawn unique across every node sharing this set, as a cluster
        # whose containers were all made through swarmproxy has them.
        self.names: set[str] = set() if names is None else names
        self.subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        # Recent events, for a subscriber that resumes with `since`.
        self.history: deque[dict[str, Any]] = deque(maxlen=256)
        self.networks = {
            name: f"{rng.getrandbits(256):064x}" for name in ("bridge", "host", "none")
        }
        self._next_ip = 2

    # --- state ------------------------------------------------------------------------
    def new_id(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def new_name(self) -> str:
        base = f"{self.rng.choice(_ADJECTIVES)}_{self.rng.choice(_SURNAMES)}"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}{n}"
        return name

    def add_container(
        self,
        *,
        name: str = "",
        cmd: Iterable[str] = ("sleep", "3600"),
        created: float | None = None,
        state: str = "created",
        image: str = "busybox",
        labels: Mapping[str, str] | None = None,
        env: Iterable[str] = (),
        host_config: Mapping[str, Any] | None = None,
    ) -> SimContainer:
        now = time.time()
        container = SimContainer(
            id=self.new_id(),
            name=name or self.new_name(),
            image=image,
            cmd=list(cmd),
            created=now if created is None else created,
            labels=dict(labels or {}),
            env=[PATH_ENV, *env],
            host_config=dict(host_config or {}),
        )
        self.containers[container.id] = container
        self.names.add(container.name)
        if state == "running":
            self.start(container, at=container.created + 1)
        elif state == "exited":
            self.start(container, at=container.created + 1)
            self.stop(container, at=container.created + 2 + self.rng.uniform(0, 600))
        return container

    def start(self, container: SimContainer, at: float | None = None) -> None:
        container.state = "running"
        container.started_at = time.time() if at is None else at
        container.pid = self.rng.randint(1000, 60000)
        container.ip = f"172.17.{self._next_ip // 250}.{self._next_ip % 250 + 2}"
        self._next_ip += 1

    def stop(self, container: SimContainer, at: float | None = None, code: int = 0) -> None:
        container.state = "exited"
        container.finished_at = time.time() if at is None else at
        container.exit_code = code
        container.pid = 0

    def find(self, ref: str) -> SimContainer:
        """By full ID, name, then unique ID prefix: the daemon's order."""
        if ref in self.containers:
            return self.containers[ref]
        name = ref.removeprefix("/")
        for container in self.containers.values():
            if container.name == name:
                return container
        matches = [c for cid, c in self.containers.items() if cid.startswith(ref)] if ref else []
        if len(matches) > 1:
            raise APIError(500, f"multiple IDs found with provided prefix: {ref}")
        if not matches:
            raise APIError(404, f"No such container: {ref}")
        return matches[0]

    def emit(self, container: SimContainer, action: str) -> None:
        now = time.time_ns()
        event: dict[str, Any] = {
            "status": action,
            "id": container.id,
            "from": container.image,
            "Type": "container",
            "Action": action,
            "Actor": {
                "ID": container.id,
                "Attributes": {"image": container.image, "name": container.name} | container.labels,
            },
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if action == "die":
            event["Actor"]["Attributes"]["exitCode"] = str(container.exit_code)
        self.history.append(event)
        for queue in self.subscribers:
            queue.put_nowait(event)

    # --- answers ----------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        details = {
            "ApiVersion": API_VERSION,
            "Arch": "amd64",
            "BuildTime": "2023-04-04T08:33:04.000000000+00:00",
            "Experimental": "false",
            "GitCommit": "5d6db84",
            "GoVersion": "go1.19.8",
            "KernelVersion": KERNEL,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
        }
        return {
            # Says what it is wherever a person would look.
            "Platform": {"Name": "Docker Engine - simulated (swarmproxy bench)"},
            "Components": [
                {"Name": "Engine", "Version": ENGINE_VERSION, "Details": details},
                {"Name": "containerd", "Version": "1.6.20", "Details": {"GitCommit": "sim"}},
                {"Name": "runc", "Version": "1.1.5", "Details": {"GitCommit": "sim"}},
                {"Name": "docker-init", "Version": "0.19.0", "Details": {"GitCommit": "de40ad0"}},
            ],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "5d6db84",
            "GoVersion": "go1.19.8",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": KERNEL,
            "BuildTime": "2023-04-04T08:33:04.000000000+00:00",
        }

    def info(self) -> dict[str, Any]:
        states = Counter(c.state for c in self.containers.values())
        return {
            "ID": self.daemon_id,
            "Containers": len(self.containers),
            "ContainersRunning": states["running"],
            "ContainersPaused": states["paused"],
            "ContainersStopped": states["exited"] + states["created"],
            "Images": 1,
            "Driver": "overlay2",
            "DriverStatus": [
                ["Backing Filesystem", "extfs"],
                ["Supports d_type", "true"],
                ["Native Overlay Diff", "true"],
                ["userxattr", "false"],
            ],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "ipvlan", "macvlan", "null", "overlay"],
                "Authorization": None,
                "Log": ["awslogs", "fluentd", "gcplogs", "gelf", "journald", "json-file"],
            },
            "MemoryLimit": True,
            "SwapLimit": True,
            "KernelMemory": True,
            "KernelMemoryTCP": True,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "BridgeNfIptables": True,
            "BridgeNfIp6tables": True,
            "Debug": False,
            "NFd": 30 + 2 * len(self.subscribers),
            "OomKillDisable": True,
            "NGoroutines": 40 + 3 * len(self.subscribers),
            "SystemTime": _rfc3339(time.time()),
            "LoggingDriver": "json-file",
            "CgroupDriver": "systemd",
            "CgroupVersion": "2",
            "NEventsListener": len(self.subscribers),
            "KernelVersion": KERNEL,
            "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
            "OSVersion": "12",
            "OSType": "linux",
            "Architecture": "x86_64",
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [],
                "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                "IndexConfigs": {
                    "docker.io": {
                        "Name": "docker.io",
                        "Mirrors": [],
                        "Secure": True,
                        "Official": True,
                    }
                },
                "Mirrors": [],
            },
            "NCPU": 4,
            "MemTotal": 8_331_120_640,
            "GenericResources": None,
            "DockerRootDir": "/var/lib/docker",
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": self.name,
            "Labels": ["simulated=true"],
            "ExperimentalBuild": False,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {
                "io.containerd.runc.v2": {"path": "runc"},
                "io.containerd.runtime.v1.linux": {"path": "runc"},
                "runc": {"path": "runc"},
            },
            "DefaultRuntime": "runc",
            "Swarm": dict(INACTIVE_SWARM),
            "LiveRestoreEnabled": False,
            "Isolation": "",
            "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "sim", "Expected": "sim"},
            "RuncCommit": {"ID": "sim", "Expected": "sim"},
            "InitCommit": {"ID": "de40ad0", "Expected": "de40ad0"},
            "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
            # A daemon on plain tcp:// says so, naming its own address.
            "Warnings": [
                f"WARNING: API is accessible on http://127.0.0.1:{self.port} without "
                "encryption.\n         Access to the remote API is equivalent to root "
                "access on the host. Refer\n         to the 'Docker daemon attack surface' "
                "section in the documentation for\n         more information: "
                "https://docs.docker.com/go/attack-surface/"
            ],
        }

    def list_containers(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = parse_filters(query.get("filters"))
        for key in filters:
            if key not in _PS_FILTERS:
                raise APIError(400, f"Invalid filter '{key}'")
        for status in filters.get("status", []):
            if status not in _STATUSES:
                raise APIError(400, f"Unrecognised filter value for status: {status}")
        show_all = _true(query.get("all"))
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise APIError(400, "invalid limit") from None
        # Newest first, as the daemon lists them.
        ordered = sorted(self.containers.values(), key=lambda c: c.created, reverse=True)
        bounds = {
            key: self.find(filters[key][0]).created
            for key in ("since", "before")
            if filters.get(key)
        }
        if "since" in bounds or "before" in bounds:
            show_all = True
        kept = [
            c
            for c in ordered
            if (show_all or c.state in ("running", "paused") or filters.get("status"))
            and _container_passes(c, filters, bounds)
        ]
        if limit > 0:
            kept = kept[:limit]
        now = time.time()
        listing = [c.summary(now) for c in kept]
        if _true(query.get("size")):
            for entry in listing:
                entry["SizeRw"] = 0
                entry["SizeRootFs"] = BUSYBOX_SIZE
        return listing

    def create(self, body: Any, name: str) -> SimContainer:
        if not isinstance(body, dict) or not body:
            raise APIError(400, "Config cannot be empty in order to create a container")
        image = body.get("Image")
        if not isinstance(image, str) or not _image_matches(image):
            shown = image if isinstance(image, str) else ""
            if shown and ":" not in shown.rsplit("/", 1)[-1] and "@" not in shown:
                shown += ":latest"
            raise APIError(404, f"No such image: {shown}")
        if name:
            if not _NAME.match(name):
                raise APIError(
                    400,
                    f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                )
            name = name.removeprefix("/")
            for other in self.containers.values():
                if other.name == name:
                    raise APIError(
                        409,
                        f'Conflict. The container name "/{name}" is already in use by '
                        f'container "{other.id}". You have to remove (or rename) that '
                        "container to be able to reuse that name.",
                    )
        cmd = body.get("Cmd") or ["sh"]
        container = self.add_container(
            name=name,
            cmd=[str(a) for a in (cmd if isinstance(cmd, list) else [cmd])],
            image=image,
            labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
            env=[str(e) for e in body.get("Env") or []],
            host_config=body.get("HostConfig") or {},
        )
        self.emit(container, "create")
        return container


def _label_matches(labels: Mapping[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    if key.endswith("!"):
        return labels.get(key[:-1]) != value
    return key in labels and (not eq or labels[key] == value)


def _container_passes(
    container: SimContainer, filters: Mapping[str, list[str]], bounds: Mapping[str, float]
) -> bool:
    # Values of one key are alternatives; keys must all hold, as in dockerd.
    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: re.search(v, container.id) is not None,
        "name": lambda v: re.search(v, f"/{container.name}") is not None,
        "status": lambda v: container.state == v,
        "ancestor": _image_matches,
        "exited": lambda v: container.state == "exited" and str(container.exit_code) == v,
    }
    for key, check in checks.items():
        values = filters.get(key)
        if values and not any(check(v) for v in values):
            return False
    if not all(_label_matches(container.labels, v) for v in filters.get("label", [])):
        return False
    if "since" in bounds and container.created <= bounds["since"]:
        return False
    return not ("before" in bounds and container.created >= bounds["before"])


Handler = Callable[[SimulatedNode, web.Request, re.Match[str]], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers=DAEMON_HEADERS,
        content_type="application/json",
    )


def _empty(status: int) -> web.Response:
    return web.Response(status=status, headers=DAEMON_HEADERS)


def _error(status: int, message: str, daemon: bool = True) -> web.Response:
    return web.Response(
        body=json.dumps({"message": message}, separators=(",", ":")).encode() + b"\n",
        status=status,
        headers=DAEMON_HEADERS if daemon else None,
        content_type="application/json",
    )


async def _ping(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return web.Response(
        body=b"OK",
        headers={**DAEMON_HEADERS, **NO_CACHE},
        content_type="text/plain",
        charset="utf-8",
    )


async def _version(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return _json(node.version())


async def _info(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return _json(node.info())


async def _containers(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return _json(node.list_containers(request.query))


async def _create(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    try:
        body = await request.json() if request.can_read_body else None
    except ValueError as e:
        raise APIError(400, f"invalid character in JSON body: {e}") from None
    container = node.create(body, request.query.get("name", ""))
    return _json({"Id": container.id, "Warnings": []}, 201)


async def _inspect(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return _json(node.find(m["ref"]).inspect())


async def _action(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    container = node.find(m["ref"])
    action = m["action"]
    running = container.state == "running"
    if action == "start":
        if running:
            return _empty(304)
        node.start(container)
        node.emit(container, "start")
    elif action == "stop":
        if not running:
            return _empty(304)
        node.stop(container, code=137)
        node.emit(container, "die")
        node.emit(container, "stop")
    elif action == "kill":
        if not running:
            raise APIError(409, f"Container {container.id} is not running")
        node.stop(container, code=137)
        node.emit(container, "die")
        node.emit(container, "kill")
    else:  # restart
        if running:
            node.stop(container, code=137)
            node.emit(container, "die")
        node.start(container)
        node.emit(container, "start")
        node.emit(container, "restart")
    return _empty(204)


async def _wait(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.StreamResponse:
    container = node.find(m["ref"])
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise APIError(400, f"invalid condition: {condition!r}")
    # As dockerd does, the status line goes out at once and the body when the wait is over.
    response = web.StreamResponse(headers={**DAEMON_HEADERS, "Content-Type": "application/json"})
    await response.prepare(request)
    done = {"removed": ("destroy",)}.get(condition, ("die", "destroy"))
    if condition == "next-exit" or container.state == "running" or condition == "removed":
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        node.subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                if event["id"] == container.id and event["Action"] in done:
                    break
        finally:
            node.subscribers.discard(queue)
    answer = {"Error": None, "StatusCode": container.exit_code}
    await response.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
    return response


async def _remove(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    container = node.find(m["ref"])
    if container.state == "running":
        if not _true(request.query.get("force")):
            raise APIError(
                409,
                f"You cannot remove a running container {container.id}. Stop the container "
                "before attempting removal or force remove",
            )
        node.stop(container, code=137)
        node.emit(container, "kill")
        node.emit(container, "die")
    del node.containers[container.id]
    node.names.discard(container.name)
    node.emit(container, "destroy")
    return _empty(204)


def _image_summary() -> dict[str, Any]:
    return {
        "Containers": -1,
        "Created": BUSYBOX_CREATED,
        "Id": BUSYBOX_ID,
        "Labels": None,
        "ParentId": "",
        "RepoDigests": [BUSYBOX_DIGEST],
        "RepoTags": [BUSYBOX_TAG],
        "SharedSize": -1,
        "Size": BUSYBOX_SIZE,
        "VirtualSize": BUSYBOX_SIZE,
    }


async def _images(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    references = filters.get("reference")
    if references and not any(_image_matches(r) for r in references):
        return _json([])
    return _json([_image_summary()])


async def _image(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    ref = m["name"]
    if not _image_matches(ref):
        full = ref if ":" in ref.rsplit("/", 1)[-1] or "@" in ref else f"{ref}:latest"
        raise APIError(404, f"no such image: {ref}: No such image: {full}")
    config = {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": [PATH_ENV],
        "Cmd": ["sh"],
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": None,
    }
    return _json(
        {
            "Id": BUSYBOX_ID,
            "RepoTags": [BUSYBOX_TAG],
            "RepoDigests": [BUSYBOX_DIGEST],
            "Parent": "",
            "Comment": "",
            "Created": _rfc3339(BUSYBOX_CREATED),
            "Container": "",
            "ContainerConfig": dict(config, Env=None, Cmd=None),
            "DockerVersion": "20.10.23",
            "Author": "",
            "Config": config,
            "Architecture": "amd64",
            "Os": "linux",
            "Size": BUSYBOX_SIZE,
            "VirtualSize": BUSYBOX_SIZE,
            "GraphDriver": {"Data": None, "Name": "overlay2"},
            "RootFS": {
                "Type": "layers",
                "Layers": [
                    "sha256:d51af96cf93e225825efd484ea457f867cb2b967f7415b9a3b7e65a2f803838a"
                ],
            },
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }
    )


async def _volumes(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return _json({"Volumes": [], "Warnings": None})


async def _volume(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    raise APIError(404, f"get {m['name']}: no such volume")


def _network(node: SimulatedNode, name: str) -> dict[str, Any]:
    bridge = name == "bridge"
    return {
        "Name": name,
        "Id": node.networks[name],
        "Created": _rfc3339(node.started),
        "Scope": "local",
        "Driver": {"bridge": "bridge", "host": "host", "none": "null"}[name],
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": None,
            "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}] if bridge else [],
        },
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {"com.docker.network.bridge.default_bridge": "true"} if bridge else {},
        "Labels": {},
    }


async def _networks(node: SimulatedNode, request: web.Request, m: re.Match[str]) -> web.Response:
    return _json([_network(node, name) for name in node.networks])


async def _network_inspect(
    node: SimulatedNode, request: web.Request, m: re.Match[str]
) -> web.Response:
    ref = m["ref"]
    for name, network_id in node.networks.items():
        if ref in (name, network_id) or (len(ref) >= 2 and network_id.startswith(ref)):
            return _json(_network(node, name))
    raise APIError(404, f"network {ref} not found")


def _event_passes(event: Mapping[str, Any], filters: Mapping[str, list[str]]) -> bool:
    wanted = {
        "type": [event["Type"]],
        "event": [event["Action"]],
        "container": [event["id"], event["Actor"]["Attributes"].get("name", "")],
    }
    return all(
        not filters.get(key) or any(v in have for v in filters[key]) for key, have in wanted.items()
    )


async def _events(
    node: SimulatedNode, request: web.Request, m: re.Match[str]
) -> web.StreamResponse:
    filters = parse_filters(request.query.get("filters"))
    since = float(request.query.get("since") or 0)
    until = float(request.query.get("until") or 0)
    response = web.StreamResponse(headers={**DAEMON_HEADERS, "Content-Type": "application/json"})
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    node.subscribers.add(queue)
    try:
        if since:
            for event in list(node.history):
                if event["timeNano"] / 1e9 >= since and _event_passes(event, filters):
                    await response.write(json.dumps(event).encode() + b"\n")
        if until and until <= time.time():
            return response
        while True:
            live = await queue.get()
            if live is None or (until and live["timeNano"] / 1e9 > until):
                return response
            if _event_passes(live, filters):
                await response.write(json.dumps(live).encode() + b"\n")
    finally:
        node.subscribers.discard(queue)


_ID = r"(?P<ref>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in (
        ("GET", r"^/_ping$", _ping),
        ("HEAD", r"^/_ping$", _ping),
        ("GET", r"^/version$", _version),
        ("GET", r"^/info$", _info),
        ("GET", r"^/events$", _events),
        ("GET", r"^/containers/json$", _containers),
        ("POST", r"^/containers/create$", _create),
        ("GET", rf"^/containers/{_ID}/json$", _inspect),
        ("POST", rf"^/containers/{_ID}/(?P<action>start|stop|kill|restart)$", _action),
        ("POST", rf"^/containers/{_ID}/wait$", _wait),
        ("DELETE", rf"^/containers/{_ID}$", _remove),
        ("GET", r"^/images/json$", _images),
        ("GET", r"^/images/(?P<name>.+)/json$", _image),
        ("GET", r"^/volumes$", _volumes),
        ("GET", r"^/volumes/(?P<name>[^/]+)$", _volume),
        ("GET", r"^/networks$", _networks),
        ("GET", rf"^/networks/{_ID}$", _network_inspect),
    )
]


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it): each
    simulated node is a listening socket, and each of its clients' connections one more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class SimulatedNodes:
    """N SIMULATED Docker nodes served by one aiohttp application in this process, each
    on its own 127.0.0.1 port. Each starts with `containers` containers of its own (about
    half running); every answer waits `latency_ms` (low, high), uniformly drawn."""

    def __init__(
        self,
        count: int,
        containers: int = 3,
        latency_ms: tuple[float, float] = (0.2, 1.0),
        seed: int = 0,
    ) -> None:
        self.count = count
        self.containers = containers
        self.latency = (latency_ms[0] / 1000, latency_ms[1] / 1000)
        self.rng = random.Random(seed)
        self.nodes: list[SimulatedNode] = []
        self._by_port: dict[int, SimulatedNode] = {}
        self._names: set[str] = set()
        self._runner: web.AppRunner | None = None
        # Endpoints answered "page not found": what swarmproxy asked that is not simulated.
        self.unknown: Counter[str] = Counter()
        self.served = 0
        self.waited = 0.0

    @property
    def addresses(self) -> list[tuple[str, str]]:
        """(name, tcp://127.0.0.1:PORT) of every simulated node."""
        return [(n.name, n.address) for n in self.nodes]

    async def __aenter__(self) -> SimulatedNodes:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        limit = raise_nofile_limit()
        # A listener per node, and a few connections per node from each client (pool,
        # event stream, pings): fail now rather than half way through a join.
        if limit < 6 * self.count + 64:
            raise RuntimeError(
                f"open-file limit {limit} too low for {self.count} simulated nodes "
                f"(want {6 * self.count + 64})"
            )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            for index in range(1, self.count + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", 0))
                node = SimulatedNode(index, sock.getsockname()[1], self.rng, self._names)
                self._populate(node)
                site = web.SockSite(self._runner, sock, backlog=512)
                await site.start()
                self.nodes.append(node)
                self._by_port[node.port] = node
        except BaseException:
            await self.close()
            raise
        log.info(
            "simulated nodes listening",
            extra={"fields": {"nodes": self.count, "containers_each": self.containers}},
        )

    def _populate(self, node: SimulatedNode) -> None:
        now = time.time()
        for i in range(self.containers):
            node.add_container(
                created=now - self.rng.uniform(600, 3 * 86400),
                state="running" if i % 2 == 0 else "exited",
                cmd=("sleep", "infinity") if i % 2 == 0 else ("sh", "-c", "echo done"),
                labels={"com.example.bench": "scale", "com.example.simulated": "true"},
            )

    async def close(self) -> None:
        for node in self.nodes:
            for queue in node.subscribers:
                queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.unknown:
            log.warning(
                "simulated nodes were asked for endpoints they do not simulate",
                extra={"fields": {"endpoints": dict(self.unknown)}},
            )
        log.info(
            "simulated nodes stopped",
            extra={
                "fields": {
                    "requests": self.served,
                    "mean_latency_ms": round(1000 * self.waited / max(self.served, 1), 3),
                }
            },
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        node = self._by_port.get(sockname[1]) if sockname else None
        if node is None:
            return _error(404, "page not found", daemon=False)
        path = request.path
        versioned = _VERSIONED.match(path)
        if versioned:
            path = versioned[2]
        routed = _route(request.method, path)
        if routed is None:
            self.unknown[f"{request.method} {path}"] += 1
            log.debug("not simulated", extra={"fields": {"method": request.method, "path": path}})
            return _error(404, "page not found", daemon=False)
        started = time.perf_counter()
        low, high = self.latency
        if high > 0:
            await asyncio.sleep(self.rng.uniform(low, high))
        self.served += 1
        self.waited += time.perf_counter() - started
        if versioned:
            refusal = _version_refusal(versioned[1])
            if refusal:
                return _error(400, refusal)
        handler, m = routed
        try:
            return await handler(node, request, m)
        except APIError as e:
            return _error(e.status, e.message)


def _route(method: str, path: str) -> tuple[Handler, re.Match[str]] | None:
    for wanted, pattern, handler in ROUTES:
        if wanted == method and (m := pattern.match(path)):
            return handler, m
    return None


def _version_refusal(requested: str) -> str:
    def parse(v: str) -> tuple[int, int]:
        major, _, minor = v.partition(".")
        return int(major), int(minor or 0)

    if parse(requested) > parse(API_VERSION):
        return (
            f"client version {requested} is too new. Maximum supported API version is {API_VERSION}"
        )
    if parse(requested) < parse(MIN_API_VERSION):
        return (
            f"client version {requested} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    return ""


def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    return float(low), float(high or low)


async def serve(nodes: int, containers: int, latency_ms: tuple[float, float], seed: int) -> None:
    """Serve the simulated nodes until SIGTERM or SIGINT; their addresses go to stdout as
    one JSON line once every node listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SimulatedNodes(nodes, containers, latency_ms, seed) as sim:
        ready = {
            "simulated": True,
            "nodes": [{"name": name, "address": address} for name, address in sim.addresses],
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sim",
        description="Serve SIMULATED Docker Engine nodes (not real daemons) on 127.0.0.1.",
    )
    parser.add_argument("--nodes", type=int, default=10, help="simulated nodes to serve")
    parser.add_argument("--containers", type=int, default=3, help="containers on each node")
    parser.add_argument(
        "--latency-ms", type=_latency, default=(0.2, 1.0), help="LOW:HIGH per answer"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(fields)s",
            defaults={"fields": {}},
        )
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    asyncio.run(serve(args.nodes, args.containers, args.latency_ms, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
