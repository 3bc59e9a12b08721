"""Where a new container goes: the candidate nodes, the filters in order, a soft preference
for nodes that hold the image, the strategy, and the `before_container_create` hooks. The
same pipeline answers the placement dry-run, with every node's verdict and score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any

from swarmproxy import metrics
from swarmproxy.cluster.hooks import HookRefused
from swarmproxy.cluster.images import holder_addresses, index_key
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import DockerError, NoNodeAvailable, NotFound
from swarmproxy.log import log_event
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.scheduler.filters.base import PlacementContext
from swarmproxy.storage import ImageRecord

log = logging.getLogger("swarmproxy.cluster")

# What excluded a node beside the filters.
RETRIED = "retry"
HOOK = "hook"
# The soft preference for nodes that already hold the image.
IMAGE = "image"

_address = attrgetter("address")


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


@dataclass
class _Judgement:
    """A placement while it is made. Only what sets nodes apart is written down, so that a
    decision among a thousand nodes makes no object per node; the verdicts are made from
    it for the dry-run, or for a refusal."""

    considered: list[Node]
    strategy: str
    # By node: the filter (or `retry`, `hook`) that excluded it, and why.
    excluded: dict[Node, tuple[str, str]] = field(default_factory=dict)
    # Passed, but set aside for nodes that hold the image: why.
    unpreferred: dict[Node, str] = field(default_factory=dict)
    # The strategy's ratings (the dry-run's).
    scores: dict[Node, float] = field(default_factory=dict)
    chosen: Node | None = None

    def placement(self) -> Placement:
        verdicts = []
        for node in dict.fromkeys(self.considered):
            by, reason = self.excluded.get(node, ("", self.unpreferred.get(node, "")))
            unpreferred = node in self.unpreferred
            verdicts.append(Verdict(node, by, reason, unpreferred, self.scores.get(node)))
        return Placement(self.chosen, verdicts, self.strategy)

    def named_exclusions(self) -> str:
        """`node-1:health,node-2:port`, in the nodes' order; `-` for none."""
        if not self.excluded:
            return "-"
        return ",".join(
            f"{node.name}:{self.excluded[node][0]}"
            for node in dict.fromkeys(self.considered)
            if node in self.excluded
        )


class Placing(ClusterParts):
    """Mixed into Cluster, which provides the nodes, the filters and the strategy."""

    async def schedule(
        self, request: SchedulingRequest, nodes: Sequence[str] = (), exclude: Sequence[Node] = ()
    ) -> Node:
        """The node for a new container: among `nodes` (names or addresses) when given,
        else among every node, leaving out `exclude` (nodes that failed this create)."""
        judged = await self._judge(request, nodes, exclude, commit=True)
        if judged.chosen is None:
            raise judged.placement().refusal()
        if not self.dry:
            metrics.SCHEDULED.labels(judged.chosen.name, self.scheduler.name).inc()
        return judged.chosen

    async def place(
        self,
        request: SchedulingRequest,
        nodes: Sequence[str] = (),
        exclude: Sequence[Node] = (),
        commit: bool = False,
    ) -> Placement:
        """Judge every node for the container. Without `commit`, nothing changes (a
        rotation does not move, no hook runs): the dry-run's answer."""
        return (await self._judge(request, nodes, exclude, commit)).placement()

    async def _judge(
        self,
        request: SchedulingRequest,
        nodes: Sequence[str],
        exclude: Sequence[Node],
        commit: bool,
    ) -> _Judgement:
        considered = [self.find_node(ref) for ref in nodes] if nodes else list(self.nodes)
        judged = _Judgement(considered, self.scheduler.name)
        candidates = considered
        if exclude:
            for node in exclude:
                if node in considered:
                    judged.excluded[node] = (RETRIED, "failed this create")
            candidates = [n for n in considered if n not in exclude]
        for rule in self.filters:
            if not candidates:
                break
            excluded = await rule.judge(candidates, request, self._context())
            # Most filters exclude no one, most of the time: the candidates stay as they are.
            if excluded:
                for node, reason in excluded.items():
                    judged.excluded[node] = (rule.name, reason)
                candidates = [n for n in candidates if n not in excluded]
        for tier in await self._prefer_image_holders(request, candidates, judged):
            judged.chosen = await self._choose(request, tier, judged, commit)
            if judged.chosen is not None:
                break
        return judged

    async def _choose(
        self, request: SchedulingRequest, candidates: list[Node], judged: _Judgement, commit: bool
    ) -> Node | None:
        """The strategy's pick among `candidates`, which the hooks accept (when `commit`)."""
        while candidates:
            if not commit:
                # What the dry-run shows; a real placement is the strategy's select alone.
                scores = await self.scheduler.scores(candidates, request)
                judged.scores.update(scores)
                rated = [n for n in candidates if n in scores]
                return max(rated, key=lambda n: scores[n]) if rated else None
            node = await self.scheduler.select(candidates, request)
            try:
                await self.hooks.run("before_container_create", node, request)
            except HookRefused as e:
                # The hook said no to this node, not to the container: try another.
                log_event(log, logging.INFO, "placement refused", node=node.name, why=e.message)
                judged.excluded[node] = (HOOK, e.message)
                candidates = [c for c in candidates if c is not node]
                continue
            if log.isEnabledFor(logging.INFO):
                # Naming the excluded nodes goes over every node: only for a line written.
                log_event(
                    log,
                    logging.INFO,
                    "placed",
                    node=node.name,
                    strategy=self.scheduler.name,
                    excluded=judged.named_exclusions(),
                )
            return node
        return None

    async def _prefer_image_holders(
        self, request: SchedulingRequest, candidates: list[Node], judged: _Judgement
    ) -> list[list[Node]]:
        """A soft image affinity: the candidates that hold the image first, the others (who
        would get it copied) only when no holder takes the container."""
        image = request.config.get("Image")
        if not candidates or not isinstance(image, str) or not image:
            return [candidates]
        holders = await self._indexed_holders_among(image, candidates)
        if not holders:
            # As `image_holders` does when the index names no candidate: ask the nodes.
            holders = await self.nodes_holding_all([image], candidates)
        # Holders are some of the candidates, in their order: as many is all of them.
        if len(holders) == len(candidates):
            return [candidates]
        holding = set(holders)
        others = [n for n in candidates if n not in holding]
        for node in others if holders else []:
            judged.unpreferred[node] = f"does not hold {image}"
        return [tier for tier in (holders, others) if tier]

    async def _indexed_holders_among(self, image: str, candidates: list[Node]) -> list[Node]:
        """The candidates that the image index names as holders of the image's newest
        version, as `image_holders` finds them when the index knows any of them (when
        it knows none, that asks the nodes)."""
        key = index_key(image)
        if key is None:
            return []
        record = await self.storage.retrieve_image(key)
        if record is None:
            self._holders_by_image.pop(key, None)
            return []
        known = self._holders_by_image.get(key)
        if known is None or known[0] != record:
            known = (record, frozenset(holder_addresses(record, newest_only=True)))
            self._holders_by_image[key] = known
        addresses = known[1]
        if addresses.issuperset(map(_address, candidates)):
            return candidates
        return [n for n in candidates if n.address in addresses]

    @cached_property
    def _holders_by_image(self) -> dict[str, tuple[ImageRecord, frozenset[str]]]:
        """Per image (by index key), the index's record last read and the addresses it
        names as holders of the newest image. Reading them off a record is a pass over
        its history, one entry per holder; a record changes far less often than a
        container is placed, and comparing it with the last one read costs little."""
        return {}

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
