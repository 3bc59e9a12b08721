"""The cluster core: nodes, health, and the index of what lives where."""

from swarmproxy.cluster.core import Cluster, NameClaim
from swarmproxy.cluster.node import Node

__all__ = ["Cluster", "NameClaim", "Node"]
