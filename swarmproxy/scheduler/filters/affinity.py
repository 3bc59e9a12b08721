"""The `affinity` filter: the request's affinities, on what the nodes hold.

- `container==web`: a node with a container named `web` (globs and `/regex/` too), or
  whose ID is or starts with `web`;
- `image==redis:7`: a node that holds the image;
- any other key, a container label: `com.example.role==db` wants a node with a container
  so labelled.

`!=` wants a node without any such container (or image); `~` makes one soft.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from swarmproxy.scheduler.expressions import Expression, parse_expressions, sift
from swarmproxy.scheduler.filters.base import Filter, PlacementContext

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node
    from swarmproxy.scheduler.base import SchedulingRequest


class AffinityFilter(Filter):
    name = "affinity"

    async def judge(
        self, nodes: Sequence[Node], request: SchedulingRequest, context: PlacementContext
    ) -> dict[Node, str]:
        if not request.affinities:
            # `sift` would still visit every node.
            return {}
        expressions = parse_expressions(request.affinities, "affinity")
        looked_up = [e for e in expressions if _is_image_lookup(e)]
        holders = await asyncio.gather(*(context.image_nodes(e.value) for e in looked_up))
        image_holders = {e: set(found) for e, found in zip(looked_up, holders, strict=True)}
        containers: dict[Node, list[dict[str, Any]]] = {}
        if len(image_holders) < len(expressions):
            listed = await asyncio.gather(*(context.containers_on(node) for node in nodes))
            containers = dict(zip(nodes, listed, strict=True))

        def failure(node: Node, expression: Expression) -> str | None:
            if expression in image_holders:
                present = node in image_holders[expression]
                if present == expression.equal:
                    return None
                return f"{expression}: {'image is here' if present else 'no such image'}"
            match = next(
                (c for c in containers.get(node, []) if _container_matches(expression, c)), None
            )
            if (match is not None) == expression.equal:
                return None
            if match is None:
                return f"{expression}: no container matches"
            return f"{expression}: container {container_name(match)} matches"

        return sift(nodes, expressions, failure)


def _is_image_lookup(expression: Expression) -> bool:
    """An image affinity that names one image, which the cluster's image index can place.

    A glob or a regex cannot be looked up there: it is matched instead against the image
    each container of the node was created from (as listed, and without its tag). So a
    node that holds a matching image without running a container of it does not count,
    where classic Swarm, matching every image of the node, counted it."""
    return expression.key == "image" and not expression.is_pattern


def _container_matches(expression: Expression, container: dict[str, Any]) -> bool:
    if expression.key == "container":
        if any(expression.matches(name) for name in own_names(container)):
            return True
        container_id = str(container.get("Id", "")).lower()
        return not expression.is_pattern and container_id.startswith(expression.value.lower())
    if expression.key == "image":
        image = str(container.get("Image", ""))
        return expression.matches(image) or expression.matches(_repository(image))
    labels = container.get("Labels") or {}
    return expression.matches(labels.get(expression.key))


def own_names(container: dict[str, Any]) -> list[str]:
    """The container's names without their slash; a listing also names it as each legacy
    link to it (`/web/db`), which are other containers' aliases, not its name."""
    names = (str(name).removeprefix("/") for name in container.get("Names") or ())
    return [name for name in names if "/" not in name]


def container_name(container: dict[str, Any]) -> str:
    """What to call a listed container in a reason: its name, else its short ID."""
    names = own_names(container)
    return names[0] if names else str(container.get("Id", ""))[:12]


def _repository(image: str) -> str:
    """`registry:5000/redis:7` -> `registry:5000/redis`; `redis@sha256:…` -> `redis`."""
    image = image.partition("@")[0]
    repository, colon, tag = image.rpartition(":")
    return repository if colon and "/" not in tag else image
