"""Creating a container (the seed's CreateContainer): the node it goes to, its name reserved
cluster-wide first, its image pulled there when asked, and the index told of it.

In dry mode the placement and the name are decided and recorded as always, and the node is
not called: the container gets a made-up ID.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swarmproxy.cluster import references
from swarmproxy.cluster.image_transfer import finish
from swarmproxy.cluster.images import Params, node_path
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.cluster.rescheduling import extract_reschedule
from swarmproxy.errors import BadRequest, DockerError, NodeUnavailable, naming_nodes, node_message
from swarmproxy.log import log_event
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.scheduler.expressions import extract_placement
from swarmproxy.scheduler.load import reservation_of
from swarmproxy.tasks import shielded

if TYPE_CHECKING:
    from swarmproxy.cluster.core import NameClaim
    from swarmproxy.cluster.node import Node

log = logging.getLogger("swarmproxy.cluster")

# The daemon's own rule for names (daemon/names.go).
VALID_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

Auth = str | Mapping[str, Any]


def check_name(name: str) -> None:
    if not VALID_NAME.match(name):
        raise BadRequest(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )


def registry_auth(auth: Auth | None) -> str | None:
    """The `X-Registry-Auth` header: given as such, or as its dict (username, password,
    serveraddress, or identitytoken), which is encoded as the daemon reads it."""
    if auth is None or isinstance(auth, str):
        return auth or None
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()


@dataclass(frozen=True)
class PullOptions:
    """Pull the image on the chosen node before the create (the seed's pull options)."""

    # The reference to pull; empty: the config's Image.
    image: str = ""
    auth: Auth | None = field(default=None, repr=False)
    # Seconds a pull may go without progress; None: `[images] pull_inactivity_timeout`.
    inactivity_timeout: float | None = None


@dataclass(frozen=True)
class CreatedContainer:
    id: str
    node: Node
    warnings: list[str]
    # The node's answer as it came, for the HTTP front to pass on untouched.
    body: bytes = field(repr=False)


class ContainerCreation(ClusterParts):
    """Mixed into Cluster, which provides placement, names and the index."""

    async def create_container(
        self,
        config: Mapping[str, Any] | bytes,
        name: str = "",
        *,
        nodes: Sequence[str] = (),
        scheduler_options: Any = None,
        pull: PullOptions | None = None,
        auth: Auth | None = None,
        params: Params = (),
        api_version: str = "",
        content_type: str = "application/json",
    ) -> CreatedContainer:
        """Create a container on the node the scheduler picks, or on one of `nodes` (names
        or addresses). `config` is the body of the Engine API's create, as a mapping or as
        the JSON a client sent (passed on as it is unless placement expressions are taken
        out of it); `params` are more query parameters (`platform`); `content_type` is what
        a client said its bytes are, for the node to judge; `scheduler_options` reach the
        scheduler untouched.

        The image is made present on the chosen node first: copied from a node that holds
        it, else pulled there with `auth`; `pull` pulls it there in any case. A node that
        fails the create is counted and another is tried, up to `max_attempts` nodes; a
        node's refusal of the request is raised at once as its DockerError, with the
        daemon's status and message."""
        if name:
            check_name(name)
        given = _container_config(config)
        placed, constraints, affinities = extract_placement(given)
        sent, reschedulable = extract_reschedule(placed)
        request = SchedulingRequest(name, sent, scheduler_options, constraints, affinities)
        # A client's bytes go as they came unless expressions were taken out of them.
        rewritten = isinstance(config, bytes) and sent != given
        body = config if isinstance(config, bytes) and not rewritten else json.dumps(sent).encode()
        query: Params = [*([("name", name)] if name else []), *params]
        path = node_path(api_version, "/containers/create", query)
        headers = {"Content-Type": content_type} if content_type else {}
        image = sent.get("Image")
        claim = await self.claim_name(name) if name else None
        failed: list[tuple[Node, DockerError]] = []
        try:
            while True:
                try:
                    node = await self.schedule(request, nodes, exclude=[n for n, _ in failed])
                except DockerError:
                    if not failed:
                        raise
                    # Every node that could take it failed it: that is the answer, not
                    # that no node is left.
                    raise _failures(failed) from None
                if self.dry:
                    created = CreatedContainer(secrets.token_hex(32), node, [], b"")
                    await self.container_created(created.id, node, claim)
                    break
                try:
                    await self._image_for(node, image, pull, auth, api_version)
                    creating = asyncio.ensure_future(
                        self._create_on(node, path, headers, body, claim, image)
                    )
                    try:
                        created = await asyncio.shield(creating)
                    except asyncio.CancelledError:
                        # Our caller left with the create sent: it runs to its end, since a
                        # container the index never heard of would be lost to the cluster
                        # (its name with it), and settles the claim itself.
                        creating.add_done_callback(self._settle(claim))
                        claim = None
                        raise
                    break
                except DockerError as e:
                    if not _node_at_fault(e):
                        raise
                    failed.append((node, e))
                    log_event(
                        log, logging.WARNING, "create failed", node=node.name, error=e.message
                    )
                    if len(failed) >= self.max_attempts:
                        raise _failures(failed) from e
        except BaseException:
            # A no-op once the container holds the name.
            await shielded(self.release_claim(claim))
            raise
        # Counted at once: the next placement must see it, before the node's event does.
        node.load.created(created.id, reservation_of(sent))
        await shielded(self.note_change(node, created.id))
        if reschedulable and not self.dry:
            await shielded(self.remember_plan(created.id, node, name, sent))
        return created

    async def _image_for(
        self, node: Node, image: Any, pull: PullOptions | None, auth: Auth | None, api_version: str
    ) -> None:
        if pull is not None:
            await self._pull_on(node, pull.image or str(image or ""), pull, api_version)
        elif isinstance(image, str) and image:
            await self.provide_image(node, image, auth=registry_auth(auth), api_version=api_version)

    async def _pull_on(self, node: Node, image: str, pull: PullOptions, api_version: str) -> None:
        if not image or references.is_image_id(image):
            raise BadRequest("pull options need an image reference to pull")
        await finish(
            self.pull_image(
                references.normalize(image),
                auth=registry_auth(pull.auth),
                nodes=[node],
                api_version=api_version,
                inactivity=pull.inactivity_timeout,
            )
        )

    def _settle(self, claim: NameClaim | None) -> Callable[[asyncio.Future[Any]], None]:
        """For a create left by its caller: release the claim if the create fails."""

        def settle(create: asyncio.Future[Any]) -> None:
            if create.cancelled() or create.exception() is not None:
                self._in_background(self.release_claim(claim))

        return settle

    async def _create_on(
        self,
        node: Node,
        path: str,
        headers: dict[str, str],
        body: bytes,
        claim: NameClaim | None,
        image: Any,
    ) -> CreatedContainer:
        """The create on the node, and the index told of the container it made."""
        status, payload = await node.client.read("POST", path, headers=headers, data=body)
        answer = _json(payload)
        created = status == 201 and isinstance(answer, dict)
        if created and isinstance(answer.get("Id"), str):
            await self.container_created(answer["Id"], node, claim)
            return CreatedContainer(answer["Id"], node, answer.get("Warnings") or [], payload)
        if status == 404 and isinstance(image, str) and image and b"No such image" in payload:
            # The index sent it where the image is no more: the next try goes elsewhere.
            await self.image_missing_on(node, image)
        message = node_message(answer, status)
        if status < 400 or status >= 500:
            # The daemon failed, not the request: say which one. A refusal stays word for
            # word, as clients read it (`No such image` makes the CLI pull).
            message = naming_nodes([(node.name, message)])
        raise DockerError(message, status if status >= 400 else 500)


def _failures(failed: Sequence[tuple[Node, DockerError]]) -> DockerError:
    """The nodes' failures of one create, as one error with the last one's status."""
    return DockerError("; ".join(error.message for _, error in failed), failed[-1][1].status)


def _node_at_fault(error: DockerError) -> bool:
    """A node that could not be reached, or a daemon that failed (5xx): another node may
    do better. A refusal of the request (4xx) would be the same everywhere."""
    return isinstance(error, NodeUnavailable) or error.status >= 500


def _container_config(config: Mapping[str, Any] | bytes) -> dict[str, Any]:
    """What the scheduler may read of a create's config. A body that is not a JSON object
    is refused here, in the words of a daemon of today: an older one answers it with a 500,
    which would be tried again on every node."""
    if not isinstance(config, bytes):
        return dict(config)
    if not config.strip():
        raise BadRequest("invalid JSON: got EOF while reading request body")
    try:
        parsed = json.loads(config)
    except ValueError as e:
        raise BadRequest(f"invalid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise BadRequest("invalid JSON: a container config must be an object")
    return parsed


def _parse_config(config: Mapping[str, Any] | bytes) -> dict[str, Any]:
    """What the proxy may read of a body; a body that is not a JSON object goes to the node
    all the same, which answers it as the daemon does."""
    parsed = _json(config) if isinstance(config, bytes) else dict(config)
    return parsed if isinstance(parsed, dict) else {}


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None
