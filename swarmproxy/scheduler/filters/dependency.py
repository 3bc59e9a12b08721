"""The `dependency` filter: a container goes where what it shares is.

A container it takes volumes from, links to, or whose network, PID or IPC namespace it
joins pins it to that container's node; a named volume it mounts that exists already
keeps it to the nodes that hold the volume.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swarmproxy.errors import Conflict
from swarmproxy.scheduler.filters.base import Filter, PlacementContext

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.scheduler.base import SchedulingRequest

# The daemon's rule for a volume name: a bind source that is not one is a host path.
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
_NAMESPACE_MODES = ("NetworkMode", "PidMode", "IpcMode")


@dataclass(frozen=True)
class _Dependency:
    kind: str
    name: str
    nodes: frozenset[Node]

    def __str__(self) -> str:
        names = sorted(node.name for node in self.nodes)
        where = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        return f"{self.kind} {self.name} is on {where}"


class DependencyFilter(Filter):
    name = "dependency"

    async def judge(
        self, nodes: Sequence[Node], request: SchedulingRequest, context: PlacementContext
    ) -> dict[Node, str]:
        host_config: dict[str, Any] = request.config.get("HostConfig") or {}
        containers = list(dict.fromkeys(_containers(host_config)))
        volumes = list(dict.fromkeys(_volumes(host_config)))
        if not containers and not volumes:
            # Gathering nothing would still hand the event loop to other tasks in the
            # middle of the placement.
            return {}
        container_nodes, volume_nodes = await asyncio.gather(
            asyncio.gather(*(context.container_node(ref) for ref in containers)),
            asyncio.gather(*(context.volume_nodes(name) for name in volumes)),
        )
        # An unknown container restricts nothing: its node then answers with the daemon's
        # own 404. A volume on no node restricts nothing: the daemon creates it.
        dependencies = [
            _Dependency("container", ref, frozenset({node}))
            for ref, node in zip(containers, container_nodes, strict=True)
            if node is not None
        ] + [
            _Dependency("volume", name, frozenset(found))
            for name, found in zip(volumes, volume_nodes, strict=True)
            if found
        ]
        if not dependencies:
            return {}
        if not frozenset.intersection(*(d.nodes for d in dependencies)):
            listed = ", ".join(str(d) for d in dependencies)
            raise Conflict(f"conflicting dependencies: {listed}")
        return {
            node: ", ".join(str(d) for d in dependencies if node not in d.nodes)
            for node in nodes
            if any(node not in d.nodes for d in dependencies)
        }


def _containers(host_config: dict[str, Any]) -> Iterable[str]:
    """The containers it depends on, as named: `VolumesFrom` (`name[:ro|rw]`), `Links`
    (`name:alias`, the name maybe with its slash) and the `container:x` modes."""
    for entry in host_config.get("VolumesFrom") or ():
        yield str(entry).partition(":")[0]
    for entry in host_config.get("Links") or ():
        yield str(entry).partition(":")[0].removeprefix("/")
    for mode in _NAMESPACE_MODES:
        kind, _, ref = str(host_config.get(mode) or "").partition(":")
        if kind == "container" and ref:
            yield ref


def _volumes(host_config: dict[str, Any]) -> Iterable[str]:
    """The named volumes it mounts: `Binds` (`vol:/path[:opts]`) and `Mounts` of type
    volume. Anonymous volumes have no name to look up."""
    for entry in host_config.get("Binds") or ():
        source, colon, _ = str(entry).partition(":")
        if colon and _VOLUME_NAME.match(source):
            yield source
    for mount in host_config.get("Mounts") or ():
        if mount.get("Type") == "volume" and mount.get("Source"):
            yield str(mount["Source"])
