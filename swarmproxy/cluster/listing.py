"""Merging per-node container lists into the one list the daemon would give."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swarmproxy.cluster.node import Node


def merge_containers(
    per_node: Sequence[tuple[Node, list[dict[str, Any]]]], limit: int | None
) -> list[dict[str, Any]]:
    """Newest first, as the daemon sorts; each entry names its node (classic Swarm's `Node`).

    Each node already applied the filters and its own `limit`, so the newest `limit` of the
    union are the cluster's newest `limit`.
    """
    merged: list[dict[str, Any]] = []
    for node, containers in per_node:
        described = node.describe()
        for container in containers:
            container["Node"] = described
            merged.append(container)
    merged.sort(key=lambda c: (c.get("Created", 0), c.get("Id", "")), reverse=True)
    if limit is not None and limit > 0:
        del merged[limit:]
    return merged
