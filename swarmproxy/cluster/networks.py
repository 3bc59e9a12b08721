"""Networks across the cluster: one network per name, made on every node.

A network is created on every reachable node at once, so that a container finds it on
whichever node it lands. Each node gives it an ID of its own, so the cluster knows a network
by its name: a reference (a name, or a full or partial ID from any node) is resolved to that
name by asking the nodes, in the daemon's order (full ID, then name, then unique ID prefix),
and each node is then addressed by its own ID for that name, so that no node can take the
name for the ID prefix of another network.

These are local networks, a bridge on each node: the containers of one network on two nodes
are on two bridges, and reach each other only if the nodes' hosts route between them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from swarmproxy.cluster.creation import _parse_config
from swarmproxy.cluster.images import Answer, Params, _raise_partial, answers_of, node_path
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.cluster.volumes import (
    body_of,
    call_json,
    reachable,
    refusal,
)
from swarmproxy.errors import DockerError, NotFound, naming_nodes, node_message
from swarmproxy.tasks import shielded

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node

# A network as one node describes it (its inspect), and the node.
Held = tuple["Node", dict[str, Any]]


def _network_path(api_version: str, ref: str, action: str = "", params: Params = ()) -> str:
    return node_path(api_version, f"/networks/{quote(ref, safe='')}{action}", params)


def _said_once(said: Sequence[tuple[str, str]]) -> str:
    """What nodes said: once, plainly, when every node said the same; else each distinct
    thing with the nodes that said it (and nothing for the nodes that said nothing)."""
    if len({text for _, text in said}) == 1:
        return said[0][1]
    return naming_nodes([(node, text) for node, text in said if text])


def _resolve(ref: str, answers: Sequence[Answer]) -> str:
    """The name of the network `ref` stands for, from every node's inspect of `ref`: a
    network whose ID is `ref`, else one named `ref`, else the one whose ID starts with it."""
    found = [body for _, status, body in answers if status == 200 and isinstance(body, dict)]
    for key in ("Id", "Name"):
        for network in found:
            if network.get(key) == ref:
                return str(network["Name"])
    names = {str(network.get("Name", "")) for network in found}
    if len(names) == 1:
        return names.pop()
    if names:
        raise DockerError(
            f"network {ref} is ambiguous ({len(names)} matches found based on ID prefix)", 400
        )
    # No node has it: a node's own refusal of the reference (ambiguous there) first, then
    # the daemon's 404, then a node that could not say.
    node, status, body = min(
        answers, key=lambda a: 0 if 400 <= a[1] < 500 and a[1] != 404 else 1 if a[1] == 404 else 2
    )
    raise refusal(node, status, body)


class NetworkOperations(ClusterParts):
    """The network calls of the cluster; mixed into Cluster, which provides the rest."""

    async def _network_answers(
        self,
        method: str,
        path: str | Callable[[Node], str],
        nodes: Sequence[Node] | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "",
        bounded: bool = True,
    ) -> list[Answer]:
        """Every reachable node's answer (or those of `nodes`); `path` may depend on the
        node, as a network's ID does. Unless `bounded`, each node takes what it takes (a
        removal or a prune)."""

        def call(node: Node) -> Awaitable[tuple[int, Any]]:
            where = path if isinstance(path, str) else path(node)
            return call_json(node, method, where, body, content_type)

        targets = reachable(self.callable_nodes()) if nodes is None else nodes
        timeout = self.health_config.node_timeout if bounded else None
        return answers_of(await self.fan_out(call, targets, timeout))

    async def _networks_named(
        self, ref: str, params: Params = (), api_version: str = ""
    ) -> tuple[str, list[Held]]:
        """The name `ref` stands for, and every reachable node's network of that name as the
        node describes it: first the node whose own ID `ref` is (or begins), then in the
        cluster's order."""
        answers = await self._network_answers("GET", _network_path(api_version, ref, "", params))
        name = _resolve(ref, answers)
        if name != ref:
            answers = await self._network_answers(
                "GET", _network_path(api_version, name, "", params)
            )
        held = [
            (node, body)
            for node, status, body in answers
            if status == 200 and isinstance(body, dict) and body.get("Name") == name
        ]
        if not held:
            # Removed by another client between the two questions.
            raise NotFound(f"network {ref} not found")
        held.sort(key=lambda h: not str(h[1].get("Id", "")).startswith(ref))
        return name, held

    # --- calls ----------------------------------------------------------------------
    async def create_network(
        self,
        config: Mapping[str, Any] | bytes,
        *,
        api_version: str = "",
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """`POST /networks/create` with `config` (the Engine API's body, as a mapping or as
        the JSON a client sent) on every reachable node at once, answered as the daemon
        does: `Id` is the network's ID on the first node in the cluster's order (any node's
        ID for it works everywhere through the proxy), `Warning` what the nodes warned.

        All or nothing: when a node refuses it or fails, the nodes that made it remove it
        again, and the error names each node's refusal (a refusal every node made alike is
        the daemon's own answer), so that a network is on every node or on none and a
        retry starts afresh."""
        path = node_path(api_version, "/networks/create")
        body = body_of(config)

        async def create() -> dict[str, Any]:
            answers = await self._network_answers(
                "POST", path, body=body, content_type=content_type
            )
            made = [(n, b) for n, s, b in answers if s == 201 and isinstance(b, dict)]
            if len(made) == len(answers):
                said = [(node.name, str(answer.get("Warning") or "")) for node, answer in made]
                return {"Id": made[0][1].get("Id", ""), "Warning": _said_once(said)}
            raise await self._undo_create(answers, made, api_version)

        # Once sent, the nodes' answers are acted on even if our caller goes away: a network
        # half made must be removed again.
        return await shielded(create())

    async def _undo_create(
        self, answers: Sequence[Answer], made: Sequence[Held], api_version: str
    ) -> DockerError:
        """Remove the network from the nodes that made it; the error to answer with."""
        made_on = {node for node, _ in made}
        refused = [(n, s, b) for n, s, b in answers if n not in made_on]
        said = [(node.name, node_message(body, status)) for node, status, body in refused]
        status = refused[0][1] if refused[0][1] >= 400 else 500
        if not made and len({text for _, text in said}) == 1:
            return DockerError(said[0][1], status)
        message = naming_nodes(said)
        if made:
            ids = {node: str(answer.get("Id", "")) for node, answer in made}
            undone = await self._network_answers(
                "DELETE",
                lambda node: _network_path(api_version, ids[node]),
                list(ids),
                bounded=False,
            )
            removed = [n.name for n, s, _ in undone if s in (204, 404)]
            left = [(n.name, node_message(b, s)) for n, s, b in undone if s not in (204, 404)]
            if removed:
                message += f"; removed again from {', '.join(removed)}"
            if left:
                message += f"; could not remove it again: {naming_nodes(left)}"
        return DockerError(message, status)

    async def list_networks(
        self, params: Params = (), api_version: str = ""
    ) -> list[dict[str, Any]]:
        """Every reachable node's networks (the filters applied by each), one entry per
        name, by name: the first node's description (in the cluster's order), with
        `Nodes`, the names of the nodes that have it."""
        per_node = await self.fan_out_json("GET", node_path(api_version, "/networks", params))
        by_name: dict[str, dict[str, Any]] = {}
        for node, listing in per_node:
            for network in listing or []:
                entry = by_name.setdefault(str(network.get("Name")), {**network, "Nodes": []})
                entry["Nodes"].append(node.name)
        return [by_name[name] for name in sorted(by_name)]

    async def inspect_network(
        self, ref: str, params: Params = (), api_version: str = ""
    ) -> dict[str, Any]:
        """The network as a node that has it describes it (the node whose ID `ref` is, for
        an ID), with the containers attached to it on every node, and `Nodes`."""
        _, held = await self._networks_named(ref, params, api_version)
        inspect = dict(held[0][1])
        containers: dict[str, Any] = {}
        for _, network in held:
            containers.update(network.get("Containers") or {})
        inspect["Containers"] = containers
        inspect["Nodes"] = [node.name for node, _ in held]
        return inspect

    async def remove_network(self, ref: str, api_version: str = "") -> None:
        """`docker network rm` on every reachable node that has the network. A node's
        refusal (a network in use) fails the call with that node named, and says where the
        network was removed."""
        name, held = await self._networks_named(ref, api_version=api_version)
        ids = {node: str(network.get("Id", "")) for node, network in held}

        async def remove() -> None:
            answers = await self._network_answers(
                "DELETE", lambda node: _network_path(api_version, ids[node]), list(ids)
            )
            removed = [node for node, status, _ in answers if status == 204]
            _raise_partial(answers, ok=204, done=removed, what=f"removed {name}")

        await shielded(remove())

    async def connect_network(
        self,
        ref: str,
        config: Mapping[str, Any] | bytes,
        *,
        api_version: str = "",
        content_type: str = "application/json",
    ) -> None:
        """`docker network connect`: `config` names the container (`Container`), and goes
        to the container's node, for that node's network of the name `ref` stands for."""
        await self._on_container_endpoint("/connect", ref, config, api_version, content_type)

    async def disconnect_network(
        self,
        ref: str,
        config: Mapping[str, Any] | bytes,
        *,
        api_version: str = "",
        content_type: str = "application/json",
    ) -> None:
        """`docker network disconnect`, routed as `connect_network` is."""
        await self._on_container_endpoint("/disconnect", ref, config, api_version, content_type)

    async def _on_container_endpoint(
        self,
        action: str,
        ref: str,
        config: Mapping[str, Any] | bytes,
        api_version: str,
        content_type: str,
    ) -> None:
        parsed = _parse_config(config)
        container = parsed.get("Container")
        if not isinstance(container, str) or not container:
            # No container to follow: any node answers the body as the daemon does.
            node = reachable(self.callable_nodes())[0]
            path = _network_path(api_version, ref, action)
            status, answer = await call_json(node, "POST", path, body_of(config), content_type)
        else:
            # The daemon looks for the container first, and so says its 404 first.
            record, node = await self.locate_container(container)
            _, held = await self._networks_named(ref, api_version=api_version)
            network_id = next((str(n.get("Id", "")) for on, n in held if on is node), "")
            if not network_id:
                raise NotFound(naming_nodes([(node.name, f"network {ref} not found")]))
            body = json.dumps({**parsed, "Container": record.id}).encode()
            path = _network_path(api_version, network_id, action)
            async with self.changing(node, record.id):
                status, answer = await call_json(node, "POST", path, body, "application/json")
                if status < 300:
                    await self.note_change(node, record.id)
        if status >= 300:
            raise refusal(node, status, answer)

    async def prune_networks(self, params: Params = (), api_version: str = "") -> dict[str, Any]:
        """`docker network prune` on every reachable node: the names of the networks any of
        them removed, each said once. A node that fails it is named, with what the others
        pruned."""
        path = node_path(api_version, "/networks/prune", params)
        answers = await self._network_answers("POST", path, bounded=False)
        pruned = [(node, body or {}) for node, status, body in answers if status == 200]
        deleted: list[str] = []
        for _, body in pruned:
            deleted.extend(n for n in body.get("NetworksDeleted") or [] if n not in deleted)
        what = f"deleted {', '.join(deleted)}" if deleted else "nothing to prune"
        _raise_partial(answers, ok=200, done=[node for node, _ in pruned], what=what)
        return {"NetworksDeleted": deleted or None}
