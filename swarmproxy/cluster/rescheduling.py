"""Opt-in rescheduling (classic Swarm's `reschedule:on-node-failure`): a container that asks
for it is made again on another node when its node stays down longer than
`[scheduler] reschedule_grace`, and the old one is removed if its node comes back.

Its create body is kept in storage when it is made (the plan), so that any replica can do
it; one replica at a time, under the down node's healing lock.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from swarmproxy.cluster.node import Node
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.errors import BadRequest, DockerError
from swarmproxy.log import log_event

log = logging.getLogger("swarmproxy.reschedule")

POLICIES_LABEL = "com.docker.swarm.reschedule-policies"
ON_NODE_FAILURE = "on-node-failure"
_POLICIES = (ON_NODE_FAILURE, "off")


def extract_reschedule(config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The body to send (`-e reschedule:POLICY` taken out of Env into the label, as classic
    Swarm did) and whether it asks to be rescheduled on node failure."""
    labels = config.get("Labels") or {}
    env = config.get("Env") or []
    given = labels.get(POLICIES_LABEL)
    try:
        policies = json.loads(given) if given else []
    except ValueError:
        policies = None
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise BadRequest(f"invalid label {POLICIES_LABEL}: expected a JSON array of strings")
    kept = [e for e in env if not (isinstance(e, str) and e.startswith("reschedule:"))]
    policies += [e.partition(":")[2].strip() for e in env if e not in kept]
    unknown = [p for p in policies if p not in _POLICIES]
    if unknown:
        raise BadRequest(f"invalid reschedule policy {unknown[0]!r}: expected on-node-failure")
    if len(kept) == len(env) and not given:
        return config, False
    sent = {**config, "Labels": {**labels, POLICIES_LABEL: json.dumps(policies)}}
    if config.get("Env") is not None:
        sent["Env"] = kept
    return sent, ON_NODE_FAILURE in policies


class Rescheduling(ClusterParts):
    reschedule_grace: float

    async def remember_plan(
        self, container_id: str, node: Node, name: str, config: dict[str, Any]
    ) -> None:
        plan = {"node": node.address, "name": name, "config": config}
        await self.storage.store_reschedulable(container_id, json.dumps(plan))

    async def reschedule_lost(self) -> None:
        """Make again elsewhere the containers of nodes down for longer than the grace
        period; remove the old ones from nodes that came back."""
        plans = {
            cid: json.loads(text)
            for cid, text in (await self.storage.retrieve_reschedulables()).items()
        }
        for node in self.nodes:
            mine = {cid: plan for cid, plan in plans.items() if plan.get("node") == node.address}
            if not mine:
                continue
            if node.health.callable:
                await self._remove_duplicates(node, mine)
                continue
            down_since = node.health.last_success_at
            if down_since and time.time() - down_since > self.reschedule_grace:
                async with self.healing.held(node.address):
                    await self._reschedule_from(node)

    async def _reschedule_from(self, node: Node) -> None:
        # Read again under the lock: another replica may have done it meanwhile.
        for container_id, text in (await self.storage.retrieve_reschedulables()).items():
            plan = json.loads(text)
            if plan.get("node") != node.address or plan.get("duplicate"):
                continue
            # The container is lost to the cluster: its name goes to the new one.
            await self.storage.remove_container(container_id)
            try:
                created = await self.create_container(plan["config"], plan.get("name", ""))
            except DockerError as e:
                log_event(log, logging.WARNING, "not rescheduled", node=node.name, error=e.message)
                continue
            try:
                await self.start_container(created.id)
            except DockerError as e:
                log_event(log, logging.WARNING, "rescheduled, not started", error=e.message)
            duplicate = {"node": node.address, "duplicate": True, "replaced_by": created.id}
            await self.storage.store_reschedulable(container_id, json.dumps(duplicate))
            log_event(
                log,
                logging.WARNING,
                "container rescheduled",
                node=node.name,
                container=container_id,
                to=created.node.name,
                now=created.id,
            )

    async def _remove_duplicates(self, node: Node, plans: dict[str, Any]) -> None:
        for container_id, plan in plans.items():
            if not plan.get("duplicate"):
                continue
            status, _ = await node.client.read("DELETE", f"/containers/{container_id}?force=1")
            if status in (204, 404):
                await self.storage.remove_reschedulable(container_id)
                await self.storage.remove_container(container_id)
                log_event(
                    log, logging.INFO, "duplicate removed", node=node.name, container=container_id
                )
