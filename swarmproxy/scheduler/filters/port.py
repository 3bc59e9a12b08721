"""The `port` filter: a host port already published on a node cannot be published again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swarmproxy.scheduler.filters.affinity import container_name
from swarmproxy.scheduler.filters.base import Filter, PlacementContext

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.scheduler.base import SchedulingRequest

# Host IPs that bind every address: they overlap any other.
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})


@dataclass(frozen=True)
class _Binding:
    """A host port (or, for `-p 8000-8010:80`, a range the daemon picks a free one of)."""

    ip: str
    ports: range
    protocol: str

    def __str__(self) -> str:
        last = self.ports[-1]
        ports = str(last) if len(self.ports) == 1 else f"{self.ports[0]}-{last}"
        if not self.ip:
            return f"{ports}/{self.protocol}"
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{ports}/{self.protocol}"


class PortFilter(Filter):
    name = "port"

    async def judge(
        self, nodes: Sequence[Node], request: SchedulingRequest, context: PlacementContext
    ) -> dict[Node, str]:
        bindings = _requested(request.config)
        if not bindings:
            return {}
        listed = await asyncio.gather(*(context.containers_on(node) for node in nodes))
        excluded: dict[Node, str] = {}
        for node, containers in zip(nodes, listed, strict=True):
            published = [
                (port, container)
                for container in containers
                for port in container.get("Ports") or ()
                if port.get("PublicPort")
            ]
            for binding in bindings:
                taken = [(port, c) for port, c in published if _overlaps(binding, port)]
                # A range is only out of reach when every port of it is taken.
                if {p["PublicPort"] for p, _ in taken} >= set(binding.ports):
                    owners = sorted({container_name(c) for _, c in taken})
                    excluded[node] = f"port {binding} is taken by {', '.join(owners)}"
                    break
        return excluded


def _requested(config: dict[str, Any]) -> list[_Binding]:
    """The create's bindings to fixed host ports. Ephemeral ones (no HostPort, or 0) and
    ones that do not parse (the daemon answers those with its own error) are left out."""
    port_bindings = (config.get("HostConfig") or {}).get("PortBindings") or {}
    bindings = []
    for container_port, entries in port_bindings.items():
        protocol = str(container_port).partition("/")[2].lower() or "tcp"
        for entry in entries or ():
            ports = _host_ports(str(entry.get("HostPort") or ""))
            if ports:
                bindings.append(_Binding(str(entry.get("HostIp") or ""), ports, protocol))
    return bindings


def _host_ports(text: str) -> range | None:
    first, dash, last = text.strip().partition("-")
    try:
        ports = range(int(first), int(last if dash else first) + 1)
    except ValueError:
        return None
    return ports if ports and ports[0] > 0 else None


def _overlaps(binding: _Binding, published: dict[str, Any]) -> bool:
    if published.get("PublicPort") not in binding.ports:
        return False
    if str(published.get("Type") or "tcp").lower() != binding.protocol:
        return False
    ip = str(published.get("IP") or "")
    return ip in _ANY_ADDRESS or binding.ip in _ANY_ADDRESS or ip == binding.ip
