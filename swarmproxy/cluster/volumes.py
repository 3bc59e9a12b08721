"""Volumes across the cluster: each lives on one node, and the index knows which.

A volume is its name on its node (the same name on two nodes is two volumes). A named
create goes to the node that already holds a volume of that name, as the daemon's create of
an existing name answers the existing volume, and otherwise to the node the scheduler picks;
the index then records the name on that node. Reads go to a holder: the index's first, and
when the index knows none, whichever node has it (a volume made by `docker run -v name:/x`
on a node is learned so). A removal and a prune go to every reachable node, each judging
whether it holds the volume, so that a stale index never leaves one behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from swarmproxy.cluster.creation import _parse_config
from swarmproxy.cluster.images import Answer, Params, _raise_partial, answers_of, node_path
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import (
    DockerError,
    NodeDisabled,
    NodeUnavailable,
    NoNodeAvailable,
    naming_nodes,
    node_message,
)
from swarmproxy.log import log_event
from swarmproxy.node_client import decoded
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.tasks import shielded

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node

log = logging.getLogger("swarmproxy.cluster")


async def call_json(
    node: Node,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "",
    timeout: float | None = None,
) -> tuple[int, Any]:
    """`method path` on `node`, with `body` as the client sent it: the status and JSON."""
    headers = {"Content-Type": content_type} if content_type else None
    status, payload = await node.client.read(
        method, path, headers=headers, data=body, timeout=timeout
    )
    return status, decoded(payload, status)


def reachable(nodes: list[Node]) -> list[Node]:
    """`nodes` (the callable ones), or the daemon's kind of answer when there are none."""
    if not nodes:
        raise NoNodeAvailable()
    return nodes


def refusal(node: Node, status: int, body: Any) -> DockerError:
    """A node's refusal as the daemon's error. A client's mistake keeps the daemon's words,
    which clients read; a daemon's own failure (5xx) says which node failed."""
    message = node_message(body, status)
    if status >= 500:
        message = naming_nodes([(node.name, message)])
    return DockerError(message, status if status >= 400 else 500)


def body_of(config: Mapping[str, Any] | bytes) -> bytes:
    return config if isinstance(config, bytes) else json.dumps(config).encode()


def _volume_path(api_version: str, name: str, params: Params = ()) -> str:
    return node_path(api_version, f"/volumes/{quote(name, safe='')}", params)


@dataclass(frozen=True)
class CreatedVolume:
    node: Node
    # The node's answer: the volume as the daemon describes it.
    volume: dict[str, Any]


class VolumeOperations(ClusterParts):
    """The volume calls of the cluster; mixed into Cluster, which provides the rest."""

    # --- the index ----------------------------------------------------------------
    async def _volume_holders(self, name: str) -> list[Node]:
        """The nodes the index says hold `name`, in the cluster's order, reachable or not;
        an address no longer in the cluster is left out."""
        addresses = await self.storage.retrieve_volume(name)
        return [node for node in self.nodes if node.address in addresses]

    async def volume_nodes(self, name: str) -> list[Node]:
        """The reachable nodes that hold a volume named `name`: the index's, and when it
        knows none of them, those of the nodes that say so (then indexed). In dry mode, the
        index's only: no node is asked."""
        held = [n for n in await self._volume_holders(name) if n.health.callable]
        if held or self.dry:
            return held
        return [node for node, status, _ in await self._ask_for_volume(name) if status == 200]

    async def _ask_for_volume(
        self, name: str, exclude: Sequence[Node] = (), api_version: str = ""
    ) -> list[Answer]:
        """Every other reachable node's inspect of `name`; those that have it are indexed."""
        candidates = [n for n in reachable(self.callable_nodes()) if n not in exclude]
        path = _volume_path(api_version, name)
        answers = answers_of(await self.fan_out(lambda n: call_json(n, "GET", path), candidates))
        for node, status, _ in answers:
            if status == 200:
                log_event(log, logging.INFO, "volume learned", node=node.name, volume=name)
                await self.storage.store_volume(name, node.address)
        return answers

    async def _volume_missing_on(self, node: Node, name: str) -> None:
        log_event(log, logging.INFO, "volume index corrected", node=node.name, volume=name)
        await self.storage.remove_volume(name, node.address)

    async def _refuse_for_down_volume_holder(self, name: str) -> None:
        """When no reachable node has the volume but the index says a node that is down
        holds it: that node's state is the answer, not a 404 (nor a second volume)."""
        for node in await self._volume_holders(name):
            if not node.health.callable:
                raise NodeDisabled(node.name, node.address, node.health.describe())

    # --- calls ----------------------------------------------------------------------
    async def create_volume(
        self,
        config: Mapping[str, Any] | bytes,
        *,
        api_version: str = "",
        content_type: str = "application/json",
    ) -> CreatedVolume:
        """`POST /volumes/create` with `config` (the Engine API's body, as a mapping or as
        the JSON a client sent): on the node holding a volume of that name, else on the
        node the scheduler picks; indexed under the name the daemon gives it (one it
        chooses for an anonymous volume). A node's refusal is raised as its DockerError."""
        name = _parse_config(config).get("Name")
        name = name if isinstance(name, str) else ""
        node = await self._volume_home(name)
        if self.dry:
            volume = {"Name": name or secrets.token_hex(32)}
            await self.storage.store_volume(volume["Name"], node.address)
            return CreatedVolume(node, volume)
        path = node_path(api_version, "/volumes/create")

        async def create() -> CreatedVolume:
            status, answer = await call_json(node, "POST", path, body_of(config), content_type)
            if status != 201 or not isinstance(answer, dict):
                raise refusal(node, status, answer)
            made = str(answer.get("Name") or name)
            await self.storage.store_volume(made, node.address)
            log_event(log, logging.INFO, "volume created", node=node.name, volume=made)
            return CreatedVolume(node, answer)

        # Once sent, what the node made reaches the index even if our caller goes away.
        return await shielded(create())

    async def _volume_home(self, name: str) -> Node:
        if name:
            held = await self.volume_nodes(name)
            if held:
                return held[0]
            await self._refuse_for_down_volume_holder(name)
        return await self.schedule(SchedulingRequest(name=name))

    async def list_volumes(self, params: Params = (), api_version: str = "") -> dict[str, Any]:
        """Every reachable node's volumes (the filters applied by each), by name, each
        naming its node (`Node`, as containers' listings do)."""
        per_node = await self.fan_out_json("GET", node_path(api_version, "/volumes", params))
        volumes: list[dict[str, Any]] = []
        warnings: list[str] = []
        for node, answer in per_node:
            for volume in (answer or {}).get("Volumes") or []:
                volumes.append({**volume, "Node": node.describe()})
            warnings.extend(w for w in (answer or {}).get("Warnings") or [] if w not in warnings)
        volumes.sort(key=lambda v: (str(v.get("Name", "")), v["Node"]["Name"]))
        return {"Volumes": volumes, "Warnings": warnings or None}

    async def inspect_volume(self, name: str, api_version: str = "") -> dict[str, Any]:
        """A holder's inspect, naming its node: the index's holders in turn (a 404 from one
        correcting the index), then whichever node has it."""
        path = _volume_path(api_version, name)
        timeout = self.health_config.node_timeout
        tried: list[Node] = []
        said: list[Answer] = []
        failed: NodeUnavailable | None = None
        for node in await self._volume_holders(name):
            if not node.health.callable:
                continue
            tried.append(node)
            try:
                status, answer = await call_json(node, "GET", path, timeout=timeout)
            except NodeUnavailable as e:
                failed = failed or e
                continue  # another holder may answer
            if status == 200:
                return {"Node": node.describe(), **answer}
            if status != 404:
                raise refusal(node, status, answer)
            said.append((node, status, answer))
            await self._volume_missing_on(node, name)
        said += await self._ask_for_volume(name, exclude=tried, api_version=api_version)
        for node, status, answer in said:
            if status == 200:
                return {"Node": node.describe(), **answer}
        if failed is not None:
            # The index says that node holds it: what became of the node is the answer.
            raise failed
        await self._refuse_for_down_volume_holder(name)
        node, status, answer = next((a for a in said if a[1] == 404), said[0])
        raise refusal(node, status, answer)

    async def remove_volume(self, name: str, params: Params = (), api_version: str = "") -> None:
        """`docker volume rm` on every reachable node, each removing its volume of that name
        if it has one. A node's refusal (a volume in use) fails the call with that node
        named, and says where the volume was removed."""
        path = _volume_path(api_version, name, params)

        async def remove() -> None:
            answers = await self._volume_answers("DELETE", path)
            removed = [node for node, status, _ in answers if status == 204]
            gone = [node for node, status, _ in answers if status in (204, 404)]
            await asyncio.gather(*(self.storage.remove_volume(name, n.address) for n in gone))
            _raise_partial(answers, ok=204, done=removed, what=f"removed {name}")

        # What the nodes removed must leave the index even if our caller goes away.
        await shielded(remove())

    async def prune_volumes(self, params: Params = (), api_version: str = "") -> dict[str, Any]:
        """`docker volume prune` on every reachable node: what each removed (the same name
        removed on two nodes is two volumes, said twice) and the space all reclaimed. A node
        that fails it is named, with what the others pruned."""
        path = node_path(api_version, "/volumes/prune", params)

        async def prune() -> dict[str, Any]:
            answers = await self._volume_answers("POST", path)
            pruned = [(node, body or {}) for node, status, body in answers if status == 200]
            deleted: list[str] = []
            reclaimed = 0
            for node, body in pruned:
                names = [str(name) for name in body.get("VolumesDeleted") or []]
                deleted.extend(names)
                reclaimed += int(body.get("SpaceReclaimed") or 0)
                await asyncio.gather(
                    *(self.storage.remove_volume(name, node.address) for name in names)
                )
            done = f"deleted {', '.join(deleted)}" if deleted else "nothing to prune"
            _raise_partial(answers, ok=200, done=[n for n, _ in pruned], what=done)
            return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

        return await shielded(prune())

    async def _volume_answers(self, method: str, path: str) -> list[Answer]:
        """Every reachable node's answer, unbounded: removing a volume's data takes as long
        as it takes."""
        calls = await self.fan_out(
            lambda n: call_json(n, method, path), reachable(self.callable_nodes()), None
        )
        return answers_of(calls)
