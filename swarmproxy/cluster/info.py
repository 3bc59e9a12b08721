"""`/info` and `/version` for the whole cluster, built from what the nodes report."""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from swarmproxy import __version__
from swarmproxy.cluster.core import Cluster
from swarmproxy.cluster.node import Node

SUMMED = (
    "Containers",
    "ContainersRunning",
    "ContainersPaused",
    "ContainersStopped",
    "Images",
    "NCPU",
    "MemTotal",
)
PRODUCT = f"swarmproxy/{__version__}"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _runtime() -> str:
    # `docker version` shows it as the Go version: the honest answer is the Python one.
    return f"python{platform.python_version()}"


def proxy_id(name: str) -> str:
    """Stable across restarts, distinct per proxy name (nodes on one host share theirs)."""
    digest = hashlib.sha256(f"swarmproxy:{name}".encode()).hexdigest().upper()
    return ":".join(digest[i : i + 4] for i in range(0, 48, 4))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def node_status_lines(cluster: Cluster) -> list[list[str]]:
    outage = cluster.storage_outage
    storage = (
        "ok" if outage is None else f"unavailable since {_clock(outage.since)}: {outage.error}"
    )
    lines = [
        ["Storage", storage],
        ["Strategy", cluster.scheduler.name],
        ["Nodes", str(len(cluster.nodes))],
    ]
    for node in cluster.nodes:
        info = node.info
        lines.append([f" {node.name}", node.address])
        lines.append(["  └ Status", node.health.status.value])
        # The seed's creation status: only `created` nodes take new containers.
        lines.append(["  └ Creation", node.creation_status])
        if info:
            lines.append(
                [
                    "  └ Containers",
                    f"{info.get('Containers', 0)} ({info.get('ContainersRunning', 0)} running, "
                    f"{info.get('ContainersPaused', 0)} paused, "
                    f"{info.get('ContainersStopped', 0)} stopped)",
                ]
            )
            lines.append(["  └ CPUs", str(info.get("NCPU", 0))])
            lines.append(["  └ Memory", _size(info.get("MemTotal", 0))])
            lines.append(["  └ ServerVersion", node.engine_version])
        labels = ", ".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
        lines.append(["  └ Labels", labels or "(none)"])
        if node.health.last_error:
            lines.append(["  └ Error", node.health.last_error])
    return lines


# A standalone daemon's `Swarm`: Swarm-mode endpoints are not served (docs/compatibility.md).
INACTIVE_SWARM: dict[str, Any] = {
    "NodeID": "",
    "NodeAddr": "",
    "LocalNodeState": "inactive",
    "ControlAvailable": False,
    "Error": "",
    "RemoteManagers": None,
}


def _plugins_everywhere(infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per kind (Volume, Network, Log, Authorization), the plugins every node has: what a
    container may use wherever it is placed."""
    if not infos:
        return {}
    first = infos[0].get("Plugins") or {}
    everywhere: dict[str, Any] = {}
    for kind, names in first.items():
        if names is None:
            everywhere[kind] = None
            continue
        others = [set((info.get("Plugins") or {}).get(kind) or []) for info in infos[1:]]
        everywhere[kind] = [n for n in names if all(n in held for held in others)]
    return everywhere


def cluster_info(
    cluster: Cluster, name: str, infos: Sequence[tuple[Node, dict[str, Any]]]
) -> dict[str, Any]:
    """Sum what adds up, keep one node's answer as the frame for the rest of the fields."""
    base: dict[str, Any] = dict(infos[0][1]) if infos else {}
    for key in SUMMED:
        base[key] = sum(int(info.get(key, 0)) for _, info in infos)
    warnings: list[str] = []
    for _, info in infos:
        for warning in info.get("Warnings") or []:
            if warning not in warnings:
                warnings.append(warning)
    base.update(
        ID=proxy_id(name),
        Name=name,
        ServerVersion=PRODUCT,
        SystemStatus=node_status_lines(cluster),
        Warnings=warnings,
        Labels=[],
        # The proxy is the cluster, not a Swarm-mode member, whatever one node may be.
        Swarm=INACTIVE_SWARM,
        Plugins=_plugins_everywhere([info for _, info in infos]),
    )
    base.setdefault("OSType", "linux")
    base.setdefault("Architecture", platform.machine())
    return base


def cluster_version(cluster: Cluster) -> dict[str, Any]:
    components: list[dict[str, Any]] = [
        {
            "Name": "Engine",
            "Version": PRODUCT,
            "Details": {
                "ApiVersion": cluster.api_version,
                "MinAPIVersion": cluster.min_api_version,
                "Os": "linux",
                "Arch": _arch(),
                "KernelVersion": platform.release(),
                "GoVersion": _runtime(),
                "GitCommit": "",
                "BuildTime": "",
                "Experimental": "false",
            },
        }
    ]
    components.extend(
        {
            "Name": f"{node.name} ({node.address})",
            "Version": node.engine_version or "unknown",
            "Details": {"ApiVersion": node.api_version, "Status": node.health.status.value},
        }
        for node in cluster.nodes
    )
    return {
        "Platform": {"Name": "swarmproxy"},
        "Components": components,
        "Version": PRODUCT,
        "ApiVersion": cluster.api_version,
        "MinAPIVersion": cluster.min_api_version,
        "GitCommit": "",
        "GoVersion": _runtime(),
        "Os": sys.platform,
        "Arch": _arch(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
    }
