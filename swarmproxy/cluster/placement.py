"""Where a new container goes: the candidate nodes, the filters in order, a soft preference
for nodes that hold the image, the strategy, and the `before_container_create` hooks. The
same pipeline answers the placement dry-run, with every node's verdict and score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swarmproxy.cluster.hooks import HookRefused
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import DockerError, NoNodeAvailable, NotFound
from swarmproxy.log import log_event
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.scheduler.filters.base import PlacementContext

log = logging.getLogger("swarmproxy.cluster")

# What excluded a node beside the filters.
RETRIED = "retry"
HOOK = "hook"
# The soft preference for nodes that already hold the image.
IMAGE = "image"


@dataclass
class Verdict:
    """One node's part in a placement."""

    node: Node
    # The filter (or `retry`, `hook`) that excluded it, and why; empty when it passed.
    excluded_by: str = ""
    reason: str = ""
    # Passed, but set aside for nodes that hold the image.
    unpreferred: bool = False
    # The strategy's rating among the nodes left (None: not rated).
    score: float | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "Name": self.node.name,
            "Address": self.node.address,
            "Passed": not self.excluded_by,
            "ExcludedBy": self.excluded_by,
            "Reason": self.reason,
            "Preferred": not self.excluded_by and not self.unpreferred,
            "Score": self.score,
        }


@dataclass
class Placement:
    chosen: Node | None
    verdicts: list[Verdict]
    strategy: str

    def describe(self) -> dict[str, Any]:
        return {
            "Node": None if self.chosen is None else self.chosen.describe(),
            "Strategy": self.strategy,
            "Nodes": [v.describe() for v in self.verdicts],
        }

    def refusal(self) -> DockerError:
        """Why no node could take the container: each filter and the nodes it excluded."""
        by: dict[str, list[str]] = {}
        for verdict in self.verdicts:
            by.setdefault(verdict.excluded_by, []).append(
                f"{verdict.node.name} ({verdict.reason})" if verdict.reason else verdict.node.name
            )
        detail = "; ".join(f"{name} excluded {', '.join(nodes)}" for name, nodes in by.items())
        if not self.verdicts:
            return NoNodeAvailable("no node is registered")
        if set(by) <= {"health", RETRIED}:
            # Nodes down or failing: a later try may succeed.
            return NoNodeAvailable(f"no node can take the container: {detail}")
        # The request's own rules cannot be met by the cluster as it is.
        return DockerError(f"no node can take the container: {detail}", 409)


class Placing(ClusterParts):
    """Mixed into Cluster, which provides the nodes, the filters and the strategy."""

    async def schedule(
        self, request: SchedulingRequest, nodes: Sequence[str] = (), exclude: Sequence[Node] = ()
    ) -> Node:
        """The node for a new container: among `nodes` (names or addresses) when given,
        else among every node, leaving out `exclude` (nodes that failed this create)."""
        placement = await self.place(request, nodes, exclude, commit=True)
        if placement.chosen is None:
            raise placement.refusal()
        return placement.chosen

    async def place(
        self,
        request: SchedulingRequest,
        nodes: Sequence[str] = (),
        exclude: Sequence[Node] = (),
        commit: bool = False,
    ) -> Placement:
        """Judge every node for the container. Without `commit`, nothing changes (a
        rotation does not move, no hook runs): the dry-run's answer."""
        considered = [self.find_node(ref) for ref in nodes] if nodes else list(self.nodes)
        verdicts = {node: Verdict(node) for node in considered}
        candidates = [n for n in considered if n not in exclude]
        for node in exclude:
            if node in verdicts:
                verdicts[node].excluded_by, verdicts[node].reason = RETRIED, "failed this create"
        for rule in self.filters:
            if not candidates:
                break
            excluded = await rule.judge(candidates, request, self._context())
            for node, reason in excluded.items():
                verdicts[node].excluded_by, verdicts[node].reason = rule.name, reason
            candidates = [n for n in candidates if n not in excluded]
        placement = Placement(None, list(verdicts.values()), self.scheduler.name)
        for tier in await self._prefer_image_holders(request, candidates, verdicts):
            placement.chosen = await self._choose(request, tier, verdicts, commit)
            if placement.chosen is not None:
                break
        return placement

    async def _choose(
        self,
        request: SchedulingRequest,
        candidates: list[Node],
        verdicts: dict[Node, Verdict],
        commit: bool,
    ) -> Node | None:
        """The strategy's pick among `candidates`, which the hooks accept (when `commit`)."""
        while candidates:
            if not commit:
                # What the dry-run shows; a real placement is the strategy's select alone.
                scores = await self.scheduler.scores(candidates, request)
                for node, score in scores.items():
                    verdicts[node].score = score
                rated = [n for n in candidates if n in scores]
                return max(rated, key=lambda n: scores[n]) if rated else None
            node = await self.scheduler.select(candidates, request)
            try:
                await self.hooks.run("before_container_create", node, request)
            except HookRefused as e:
                # The hook said no to this node, not to the container: try another.
                log_event(log, logging.INFO, "placement refused", node=node.name, why=e.message)
                verdicts[node].excluded_by, verdicts[node].reason = HOOK, e.message
                candidates = [c for c in candidates if c is not node]
                continue
            excluded = ",".join(
                f"{v.node.name}:{v.excluded_by}" for v in verdicts.values() if v.excluded_by
            )
            log_event(
                log,
                logging.INFO,
                "placed",
                node=node.name,
                strategy=self.scheduler.name,
                excluded=excluded or "-",
            )
            return node
        return None

    async def _prefer_image_holders(
        self, request: SchedulingRequest, candidates: list[Node], verdicts: dict[Node, Verdict]
    ) -> list[list[Node]]:
        """A soft image affinity: the candidates that hold the image first, the others (who
        would get it copied) only when no holder takes the container."""
        image = request.config.get("Image")
        if not candidates or not isinstance(image, str) or not image:
            return [candidates]
        holders = await self.nodes_holding_all([image], candidates)
        holding = set(holders)
        others = [n for n in candidates if n not in holding]
        for node in others if holders else []:
            verdicts[node].unpreferred = True
            verdicts[node].reason = f"does not hold {image}"
        return [tier for tier in (holders, others) if tier]

    # --- what filters may ask (scheduler.filters.base.PlacementContext) ---------------
    def _context(self) -> PlacementContext:
        return self

    async def container_node(self, ref: str) -> Node | None:
        try:
            _, node = await self.locate_container(ref)
        except NotFound:
            return None
        return node

    async def containers_on(self, node: Node) -> list[dict[str, Any]]:
        try:
            status, listing = await node.client.json("GET", "/containers/json?all=1")
        except DockerError:
            return []
        return listing if status == 200 and isinstance(listing, list) else []

    async def image_nodes(self, ref: str) -> list[Node]:
        return await self.image_holders(ref)
