"""swarmproxy: one Docker Engine API in front of many Docker daemons.

`swarmproxy.Cluster` and `swarmproxy.Node` are the cluster core, for use as a library.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Cluster", "Node", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded when asked for: `swarmproxy --version` need not import aiohttp and the rest.
    if name in ("Cluster", "Node"):
        from swarmproxy import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'swarmproxy' has no attribute {name!r}")
