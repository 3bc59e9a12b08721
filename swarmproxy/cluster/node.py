"""A node: a Docker daemon known by its address and configured name (daemons on one host
report the same ID and Name, so neither identifies a node)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

from swarmproxy.cluster.health import NodeHealth
from swarmproxy.cluster.node_containers import NodeContainers
from swarmproxy.node_client import NodeClient
from swarmproxy.scheduler.load import NodeLoad
from swarmproxy.tls import NodeTLS

# The seed's creation statuses: only a `created` node takes new containers. `pending` and
# `error` are for nodes a provisioner is still making (or failed to); `disabled` is drained.
CREATED, PENDING, ERROR, DISABLED = "created", "pending", "error", "disabled"
CREATION_STATUSES = (CREATED, PENDING, ERROR, DISABLED)


@dataclass(eq=False)
class Node:
    name: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    health: NodeHealth = field(default_factory=NodeHealth)
    # Filled by the health monitor from the daemon's /version and /info.
    api_version: str = ""
    min_api_version: str = ""
    engine_version: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    # When its versions and info were last read (monotonic seconds).
    described_at: float = 0.0
    # The seed's creation status, from the node's record.
    creation_status: str = CREATED
    # Keyword-only, so that the positional fields above keep their places.
    tls: NodeTLS | None = field(default=None, kw_only=True)
    load: NodeLoad = field(default_factory=NodeLoad, kw_only=True)
    # Its containers as listed, for `ps` (kept fresh by its events).
    containers: NodeContainers = field(default_factory=NodeContainers, kw_only=True)
    # Counts the changes this process made to the node's record, so that a reading of
    # storage begun before one of them is not applied over it.
    generation: int = field(default=0, kw_only=True)
    # What speaks to the daemon: dry mode's nodes get one that never does.
    client_class: InitVar[type[NodeClient]] = field(default=NodeClient, kw_only=True)
    client: NodeClient = field(init=False)

    def __post_init__(self, client_class: type[NodeClient]) -> None:
        self.client = client_class(self.name, self.address, self.health, self.tls)

    @property
    def ready(self) -> bool:
        """May take new containers: healthy, and created (not drained, not in the making)."""
        return self.health.ready and self.creation_status == CREATED

    def describe(self) -> dict[str, Any]:
        """The node as API users see it beside a container (classic Swarm's `Node`)."""
        return {
            "Name": self.name,
            "Addr": self.address,
            "Labels": self.labels,
            "Cpus": self.info.get("NCPU", 0),
            "Memory": self.info.get("MemTotal", 0),
        }
