"""The cluster core: nodes, health, and the index of what lives where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarmproxy.cluster.core import Cluster, NameClaim
    from swarmproxy.cluster.node import Node

__all__ = ["Cluster", "NameClaim", "Node"]


def __getattr__(name: str) -> Any:
    # Loaded when asked for, so that a module of the cluster (its nodes, say) can be
    # imported by the scheduler without importing the whole core, which imports the
    # scheduler.
    if name in ("Cluster", "NameClaim"):
        from swarmproxy.cluster import core

        return getattr(core, name)
    if name == "Node":
        from swarmproxy.cluster.node import Node

        return Node
    raise AttributeError(f"module 'swarmproxy.cluster' has no attribute {name!r}")
