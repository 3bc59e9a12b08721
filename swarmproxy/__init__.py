"""swarmproxy: one Docker Engine API in front of many Docker daemons.

`swarmproxy.Cluster` and `swarmproxy.Node` are the cluster core, for use as a library.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    # pyproject.toml is the one place the version is written; the installed metadata carries it.
    __version__ = version("swarmproxy")
except PackageNotFoundError:
    # A checkout on sys.path that was never installed has no metadata to read.
    __version__ = "0+unknown"
__all__ = ["Cluster", "Node", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded when asked for: `swarmproxy --version` need not import aiohttp and the rest.
    if name in ("Cluster", "Node"):
        from swarmproxy import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'swarmproxy' has no attribute {name!r}")
