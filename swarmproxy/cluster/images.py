"""Images across the cluster: where each is, and the image calls of the library API.

Mutations (tag, remove, prune) go to every ready node, each judging whether it holds the
image, so that a stale index never leaves a node out; reads (inspect, history, save, push)
go to one node that holds the image, found through the index (`LastNode` first) and, when
the index knows nothing or is wrong, by asking the nodes. Every change that goes through
the proxy is written to the index from what the node itself then says of the image.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Sequence,
)
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from swarmproxy.cluster import references
from swarmproxy.cluster.broadcast import Broadcast, NodeResult
from swarmproxy.cluster.build import BuildContext
from swarmproxy.cluster.image_listing import (
    filter_by_created,
    merge_deletions,
    merge_images,
    merge_prunes,
    merge_system_df,
    newest_first,
)
from swarmproxy.cluster.image_transfer import CopyFailed, InFlight, copy_image, failed_on, finish
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.cluster.streams import chunks, lines
from swarmproxy.cluster.timestamps import parse_timestamp
from swarmproxy.errors import (
    Conflict,
    DockerError,
    NodeUnavailable,
    NoNodeAvailable,
    NotFound,
    naming_nodes,
    node_message,
)
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS, operation_of
from swarmproxy.scheduler import SchedulingRequest
from swarmproxy.storage import ImageRecord
from swarmproxy.tasks import shielded

log = logging.getLogger("swarmproxy.cluster")

Params = Sequence[tuple[str, str]]
# Base64 of "{}": no credentials, as the docker CLI sends when it has none.
NO_AUTH = "e30="
# A name the daemon also reads as an image ID prefix, when no repository has that name.
_HEX = re.compile(r"[a-f0-9]+")


def node_path(api_version: str, path: str, params: Params = ()) -> str:
    """A path for a node: under the caller's API version, with the query encoded."""
    prefix = f"/v{api_version}" if api_version else ""
    query = urlencode(list(params))
    return f"{prefix}{path}?{query}" if query else f"{prefix}{path}"


def quoted(ref: str) -> str:
    # A reference goes into the path as the daemon's client puts it: slashes and colons raw.
    return quote(ref, safe="/:@")


def index_keys(inspect: dict[str, Any]) -> tuple[list[str], list[str], set[str]]:
    """An image's indexable tags and digests (from its inspect or its listing entry), and
    every key the index files it under: its ID and each of them, normalised."""
    tags = [t for t in inspect.get("RepoTags") or [] if index_key(t)]
    digests = [d for d in inspect.get("RepoDigests") or [] if index_key(d)]
    keys = {str(inspect["Id"]), *(references.normalize(r) for r in (*tags, *digests))}
    return tags, digests, keys


def index_key(ref: str) -> str | None:
    """The index's key for a reference, or None when only the nodes can resolve it (an ID
    prefix, or a reference the daemon will refuse)."""
    try:
        return references.normalize(ref)
    except references.InvalidReference:
        return None


def _saved_name(ref: str) -> str:
    """What a holder is asked to save for `ref`: a name with its tag spelt out, since the
    daemon saves every tag of a repository named bare (and the load would then retag them
    all); an image ID, an ID prefix or a reference the daemon will refuse, as given."""
    key = index_key(ref)
    return ref if key is None or _HEX.fullmatch(ref) else key


def current_id(record: ImageRecord, node: str) -> str:
    """The image ID `node` holds under the record's reference: its newest history entry."""
    return current_ids(record).get(node, "")


def current_ids(record: ImageRecord) -> dict[str, str]:
    """`current_id` of every node in the history, in one pass."""
    return {entry.node: entry.image_id for entry in record.history}


def holder_addresses(record: ImageRecord, newest_only: bool = False) -> list[str]:
    """The addresses of the nodes a record names as holders: the last written first, then
    those holding the same image, then (unless `newest_only`) an older one."""
    others = sorted(record.nodes - {record.last_node})
    held = current_ids(record)
    newest = [a for a in others if held.get(a) == record.last_id]
    older = [] if newest_only else [a for a in others if held.get(a) != record.last_id]
    return [record.last_node, *newest, *older]


def _deletions_said(deletions: Sequence[dict[str, Any]]) -> str:
    """`Untagged: x:1, Deleted: sha256:…`, as the CLI prints a removal's lines."""
    return ", ".join(f"{kind}: {ref}" for line in deletions for kind, ref in line.items())


# A node's whole (small) answer to a call made on many nodes: its status and JSON body.
Answer = tuple[Node, int, Any]


def answers_of(results: Sequence[tuple[Node, tuple[int, Any] | BaseException]]) -> list[Answer]:
    """`fan_out` results as answers. A node that could not answer is one too, its error's
    status and message (a 502 naming it): what the other nodes did must still be seen."""
    answers: list[Answer] = []
    for node, result in results:
        if isinstance(result, DockerError):
            answers.append((node, result.status, {"message": result.message}))
        elif isinstance(result, BaseException):
            raise result
        else:
            answers.append((node, *result))
    return answers


def _raise_partial(answers: Sequence[Answer], *, ok: int, done: Sequence[Node], what: str) -> None:
    """Fail a change made on every node unless no node refused it: with a 404 when no node
    holds the image, else with every refusal, its node named (the status of the first),
    and what the nodes that did it did, so nothing half-done goes unreported."""
    refused = [(n, s, b) for n, s, b in answers if s not in (ok, 404)]
    if done and not refused:
        return
    if not refused:
        _, status, body = answers[0]
        raise DockerError(node_message(body, status), status)
    said = [(n.name, node_message(b, s)) for n, s, b in refused]
    if len(refused) == len(answers) and len({m for _, m in said}) == 1:
        # Every node refused it alike (a bad name, say): the daemon's own answer.
        raise DockerError(said[0][1], refused[0][1])
    message = naming_nodes(said)
    if done:
        message += f"; done on {', '.join(n.name for n in done)}: {what}"
    raise DockerError(message, refused[0][1])


@dataclass
class NodeAnswer:
    """A node's whole (small) answer: the response for its status and headers, its body."""

    node: Node
    response: aiohttp.ClientResponse
    body: bytes


@dataclass
class NodeOutput:
    """A node's streamed answer, in lines, as the node sent them."""

    node: Node
    response: aiohttp.ClientResponse
    lines: AsyncGenerator[bytes, None]


class ImageOperations(ClusterParts):
    """The image calls of the cluster; mixed into Cluster, which provides the rest."""

    def _ready(self) -> list[Node]:
        nodes = self.ready_nodes()
        if not nodes:
            raise NoNodeAvailable()
        return nodes

    async def _inspect_on(self, node: Node, ref: str) -> dict[str, Any] | None:
        """The node's inspect of `ref`, or None when it does not hold it."""
        status, body = await node.client.json(
            "GET", f"/images/{quoted(ref)}/json", timeout=self.health_config.node_timeout
        )
        return body if status == 200 and isinstance(body, dict) else None

    # --- the index ----------------------------------------------------------------
    async def record_image(self, node: Node, ref: str) -> None:
        """Index what `node` now holds under `ref`, as the node itself describes it."""
        try:
            inspect = await self._inspect_on(node, ref)
        except NodeUnavailable as e:
            # The change is made; the index learns it when the image is next looked up.
            log_event(
                log,
                logging.WARNING,
                "image not indexed",
                node=node.name,
                image=ref,
                error=e.message,
            )
            return
        if inspect is not None:
            await self._index_inspect(node, inspect)

    async def _index_inspect(self, node: Node, inspect: dict[str, Any]) -> None:
        image_id = str(inspect.get("Id", ""))
        if not image_id:
            return
        tags, digests, keys = index_keys(inspect)
        storage = self.storage
        await asyncio.gather(*(storage.store_image(k, image_id, node.address) for k in keys))
        for digest in digests:
            repository = references.repository(digest)
            for tag in tags:
                if references.repository(tag) == repository:
                    await storage.set_image_digest(
                        references.normalize(tag), references.digest_of(digest)
                    )

    async def learn_images(self, node: Node) -> int:
        """Index the images of a node where they agree with the index: a tag that names
        another image in the index (rebuilt elsewhere since) is not claimed for the node's
        older image. How many entries it added."""
        status, listing = await node.client.json("GET", "/images/json")
        if status != 200 or not isinstance(listing, list):
            return 0
        added = 0
        for entry in listing:
            image_id = str(entry.get("Id", ""))
            if not image_id:
                continue
            for key in index_keys(entry)[2]:
                record = await self.storage.retrieve_image(key)
                if record is None or (
                    record.last_id == image_id and node.address not in record.nodes
                ):
                    await self.storage.store_image(key, image_id, node.address)
                    added += 1
        return added

    async def _forget_deletions(self, node: Node, deletions: Sequence[dict[str, Any]]) -> None:
        """Drop from the index what a node said it untagged or deleted."""
        for line in deletions:
            untagged, deleted = line.get("Untagged"), line.get("Deleted")
            if untagged:
                await self.forget_image_on(node, str(untagged))
            if deleted:
                await self.storage.remove_image(str(deleted), str(deleted), node.address)

    async def image_missing_on(self, node: Node, ref: str) -> None:
        """A node said it has no `ref` although the index sent the call there."""
        log_event(log, logging.INFO, "image index corrected", node=node.name, image=ref)
        await self.forget_image_on(node, ref)

    async def forget_image_on(self, node: Node, ref: str) -> None:
        """Drop `node` from the index's holders of `ref`."""
        key = index_key(ref)
        record = None if key is None else await self.storage.retrieve_image(key)
        if key is not None and record is not None:
            await self.storage.remove_image(key, current_id(record, node.address), node.address)

    async def image_holders(self, ref: str, among: Sequence[Node] | None = None) -> list[Node]:
        """The ready nodes (or those of `among`) where `ref` is the image last written
        under it (a tag rebuilt on one node names an older image on the others, which a
        new container must not get); asked of the nodes when the index knows nothing."""
        held = await self._indexed_holders(ref, newest_only=True, among=among)
        return held or await self._discover_image(ref)

    async def _indexed_holders(
        self, ref: str, newest_only: bool = False, among: Sequence[Node] | None = None
    ) -> list[Node]:
        """The ready holders (or those of `among`) the index knows: the last written first,
        then those holding the same image, then (unless `newest_only`) an older one."""
        key = index_key(ref)
        record = None if key is None else await self.storage.retrieve_image(key)
        if record is None:
            return []
        ready = {n.address: n for n in (self.ready_nodes() if among is None else among)}
        return [ready[a] for a in holder_addresses(record, newest_only) if a in ready]

    async def _discover_image(self, ref: str, exclude: Sequence[Node] = ()) -> list[Node]:
        candidates = [n for n in self.ready_nodes() if n not in exclude]
        found = []
        for node, result in await self.fan_out(lambda n: self._inspect_on(n, ref), candidates):
            if isinstance(result, dict):
                await self._index_inspect(node, result)
                found.append(node)
        return found

    async def nodes_holding_all(
        self, refs: Sequence[str], candidates: Sequence[Node]
    ) -> list[Node]:
        """The candidates that hold every one of `refs`; empty when none does."""
        held = list(candidates)
        for ref in refs:
            holders = set(await self.image_holders(ref, candidates))
            held = [n for n in held if n in holders]
        return held

    @contextlib.asynccontextmanager
    async def open_on_image(
        self,
        ref: str,
        method: str,
        path: str,
        *,
        headers: Any = None,
    ) -> AsyncIterator[tuple[Node, aiohttp.ClientResponse]]:
        """A bodiless request sent to a node holding `ref`: the index's holders in turn, a
        404 from one of them correcting the index, then whichever node has it. When none
        has it, a ready node's own 404 is the answer."""
        tried = []
        for node in await self._indexed_holders(ref):
            async with contextlib.AsyncExitStack() as stack:
                try:
                    request = node.client.request(method, path, headers=headers)
                    response = await stack.enter_async_context(request)
                except NodeUnavailable:
                    tried.append(node)
                    continue  # another holder may answer
                if response.status != 404:
                    yield node, response
                    return
            tried.append(node)
            await self.image_missing_on(node, ref)
        found = await self._discover_image(ref, exclude=tried)
        target = found[0] if found else self._ready()[0]
        async with target.client.request(method, path, headers=headers) as response:
            yield target, response

    # --- reads ------------------------------------------------------------------
    async def inspect_image(self, ref: str, api_version: str = "") -> dict[str, Any]:
        path = node_path(api_version, f"/images/{quoted(ref)}/json")
        inspect: dict[str, Any] = await self._json_on_image(ref, path)
        return inspect

    async def image_history(self, ref: str, api_version: str = "") -> list[dict[str, Any]]:
        path = node_path(api_version, f"/images/{quoted(ref)}/history")
        history: list[dict[str, Any]] = await self._json_on_image(ref, path)
        return history

    async def _json_on_image(self, ref: str, path: str) -> Any:
        async with self.open_on_image(ref, "GET", path) as (node, response):
            try:
                body = await response.json(content_type=None)
            except TRANSPORT_ERRORS as e:
                raise node.client.unavailable(e, operation_of(response)) from e
            if response.status != 200:
                raise DockerError(node_message(body, response.status), response.status)
            return body

    async def save_node(self, refs: Sequence[str]) -> Node:
        """The node to save `refs` from: one that holds them all."""
        candidates = self._ready()
        together = await self.nodes_holding_all(refs, candidates)
        if together:
            return together[0]
        where = []
        for ref in refs:
            holders = await self.image_holders(ref)
            if not holders:
                # No node has it: the node's own answer says so, as the daemon's would.
                return candidates[0]
            where.append(f"{ref} on {', '.join(n.name for n in holders)}")
        raise Conflict(
            "no node holds all of the images to save together "
            f"({'; '.join(where)}): save them one at a time"
        )

    async def list_images(self, params: Params = (), api_version: str = "") -> list[dict[str, Any]]:
        """`GET /images/json` of the whole cluster: one entry per image ID, with its nodes.
        `before` and `since` name an image that may live on some nodes only, so they are
        applied here with that image's exact creation time."""
        params, before, since = await self._created_filters(params, api_version)
        path = node_path(api_version, "/images/json", params)
        per_node = await self.fan_out_json("GET", path)
        images = merge_images([(node.name, body or []) for node, body in per_node])
        if before is None and since is None:
            return images
        kept, ambiguous = filter_by_created(images, before=before, since=since)
        by_name = {node.name: node for node, _ in per_node}
        for image in ambiguous:
            # Listings give whole seconds: an image of the named one's second needs its own.
            inspect = await self._inspect_on(by_name[image["Nodes"][0]], image["Id"])
            if inspect is None:
                continue  # removed in the meantime
            created = parse_timestamp(str(inspect.get("Created", "")))
            if (before is None or created < before) and (since is None or created > since):
                kept.append(image)
        kept.sort(key=newest_first)
        return kept

    async def _created_filters(
        self, params: Params, api_version: str
    ) -> tuple[list[tuple[str, str]], float | None, float | None]:
        """The query without `before`/`since`, and the exact times those name."""
        rest: list[tuple[str, str]] = []
        times: dict[str, float | None] = {"before": None, "since": None}
        for key, value in params:
            if key != "filters" or not value:
                rest.append((key, value))
                continue
            try:
                filters = json.loads(value)
            except ValueError:
                rest.append((key, value))  # the nodes answer it with the daemon's 400
                continue
            # Neither a map nor a list of references (`{"since": 5}`): the daemon's error too.
            if not isinstance(filters, dict) or not all(
                isinstance(filters.get(name), dict | list | None) for name in ("before", "since")
            ):
                rest.append((key, value))
                continue
            for name in ("before", "since"):
                refs = filters.pop(name, None)
                # The map form {"ref": true} and the list form ["ref"] both name images.
                for ref in refs or ():
                    times[name] = await self._created(str(ref), api_version)
            rest.append((key, json.dumps(filters)))
        return rest, times["before"], times["since"]

    async def _created(self, ref: str, api_version: str) -> float:
        inspect = await self.inspect_image(ref, api_version)
        return parse_timestamp(str(inspect.get("Created", "")))

    async def system_df(self, api_version: str = "") -> dict[str, Any]:
        per_node = await self.fan_out_json("GET", node_path(api_version, "/system/df"))
        return merge_system_df([(node.name, body or {}) for node, body in per_node])

    # --- mutations --------------------------------------------------------------
    async def tag_image(
        self, ref: str, repo: str, tag: str = "", api_version: str = ""
    ) -> list[Node]:
        """Tag `ref` on every node that holds it; the nodes tagged. A node that refuses or
        cannot answer fails the call with that node named, and says where it was tagged."""
        path = node_path(api_version, f"/images/{quoted(ref)}/tag", [("repo", repo), ("tag", tag)])
        # A tag is instant on a daemon: a node that takes longer is stuck.
        answers = await self._on_every_node("POST", path, self.health_config.node_timeout)
        tagged = [node for node, status, _ in answers if status == 201]
        # Known good once a node took it; before, the nodes' own refusal is the answer.
        new_ref = references.with_tag(repo, tag) if tagged else ""
        await asyncio.gather(*(self.record_image(node, new_ref) for node in tagged))
        _raise_partial(answers, ok=201, done=tagged, what=f"tagged {new_ref}")
        return tagged

    async def remove_image(
        self, ref: str, params: Params = (), api_version: str = ""
    ) -> list[dict[str, Any]]:
        """`docker rmi` on every node that holds the image: what the nodes untagged and
        deleted, merged. A node's refusal (an image in use) fails the call with that node
        named, and says what the other nodes did remove."""
        path = node_path(api_version, f"/images/{quoted(ref)}", params)
        answers = await self._on_every_node("DELETE", path)
        removed = [(node, body or []) for node, status, body in answers if status == 200]
        await asyncio.gather(*(self._forget_deletions(node, lines) for node, lines in removed))
        merged = merge_deletions([(node.name, lines) for node, lines in removed])
        _raise_partial(answers, ok=200, done=[n for n, _ in removed], what=_deletions_said(merged))
        return merged

    async def _on_every_node(
        self, method: str, path: str, timeout: float | None = None
    ) -> list[Answer]:
        """Every ready node's status and JSON answer. A node that cannot answer is a 502
        naming it, not an exception: what the other nodes did must still be indexed and
        reported. Unbounded by default: removing a large image takes as long as it takes."""
        results = await self.fan_out(
            lambda n: n.client.json(method, path), self._ready(), timeout=timeout
        )
        return answers_of(results)

    async def prune_images(self, params: Params = (), api_version: str = "") -> dict[str, Any]:
        """`docker image prune` on every node, merged; a node that fails it is named, and
        what the others pruned is still indexed and reported."""
        answers = await self._on_every_node("POST", node_path(api_version, "/images/prune", params))
        pruned = [(node, body or {}) for node, status, body in answers if status == 200]
        await asyncio.gather(
            *(
                self._forget_deletions(node, body.get("ImagesDeleted") or [])
                for node, body in pruned
            )
        )
        merged = merge_prunes([(node.name, body) for node, body in pruned], "ImagesDeleted")
        done = ", ".join(
            f"{k}: {v}" for line in merged["ImagesDeleted"] or [] for k, v in line.items()
        )
        _raise_partial(
            answers, ok=200, done=[n for n, _ in pruned], what=done or "nothing to prune"
        )
        return merged

    async def prune_build_cache(self, params: Params = (), api_version: str = "") -> dict[str, Any]:
        per_node = await self.fan_out_json(
            "POST", node_path(api_version, "/build/prune", params), timeout=None
        )
        return merge_prunes([(node.name, body) for node, body in per_node], "CachesDeleted")

    # --- an image brought to one node -------------------------------------------
    @functools.cached_property
    def _transfers(self) -> InFlight:
        return InFlight()

    async def provide_image(
        self,
        node: Node,
        ref: str,
        *,
        auth: str | None = None,
        inactivity: float | None = None,
        api_version: str = "",
    ) -> None:
        """Make `ref` present on `node`, for a container to be created there: at once when
        the node holds the image the index knows as the newest under `ref`, else streamed
        from a ready node that holds it, else pulled there with `auth` (an
        `X-Registry-Auth` value). A transfer silent for `inactivity` seconds (default: the
        config's) fails. When neither way brings it, raises the daemon's own 404
        `No such image`, on which the docker CLI pulls. A caller for a node and image
        already being transferred in this process awaits that transfer."""
        silence = inactivity or self.images_config.pull_inactivity_timeout
        await self._transfers.join(
            (node.address, index_key(ref) or ref),
            lambda: self._provide(node, ref, auth, silence, api_version),
        )

    async def _provide(
        self, node: Node, ref: str, auth: str | None, inactivity: float, api_version: str
    ) -> None:
        key = index_key(ref)
        record = None if key is None else await self.storage.retrieve_image(key)
        held = await self._inspect_on(node, ref)
        if held is not None and (record is None or held.get("Id") == record.last_id):
            if record is None or node.address not in record.nodes:
                await self._index_inspect(node, held)
            return
        if held is None and record is not None and node.address in record.nodes:
            await self.image_missing_on(node, ref)
        failures: list[str] = []
        if await self._copy_to(node, ref, inactivity, api_version, failures):
            return
        if key is None or references.is_image_id(ref):
            failures.append("pull: no reference to pull")
        else:
            pull = self.pull_image(
                key, auth=auth, nodes=[node], api_version=api_version, inactivity=inactivity
            )
            try:
                await finish(pull)
                return
            except DockerError as e:
                failures.append(f"pull: {e.message}")
        why = "; ".join(failures)
        if held is not None:
            # Whatever it holds under `ref` is what the daemon would use: better than none.
            log_event(log, logging.WARNING, "image not updated", node=node.name, image=ref, why=why)
            return
        log_event(log, logging.WARNING, "image not provided", node=node.name, image=ref, why=why)
        raise NotFound(f"No such image: {ref}")

    async def _copy_to(
        self, node: Node, ref: str, inactivity: float, api_version: str, failures: list[str]
    ) -> bool:
        """Stream `ref` to `node` from a ready holder, from the next one when a holder
        fails; whether the node now holds it. Each failure is logged and added to
        `failures`, naming the nodes."""
        if "@" in ref:
            # A saved image carries its tags, never its digests: the node could not
            # answer to this reference after a load.
            failures.append("copy: a digest reference is only pulled")
            return False
        holders = [h for h in await self.image_holders(ref) if h.address != node.address]
        if not holders:
            failures.append("copy: no other ready node holds it")
        save = node_path(api_version, f"/images/{quoted(_saved_name(ref))}/get")
        load = node_path(api_version, "/images/load", [("quiet", "1")])
        for holder in holders:
            try:
                await copy_image(holder, node, save, load, inactivity)
                inspect = await self._inspect_on(node, ref)
                if inspect is None:
                    raise failed_on(node, "loaded, yet not found there")
            except CopyFailed as e:
                log_event(
                    log,
                    logging.WARNING,
                    "image copy failed",
                    image=ref,
                    source=holder.name,
                    target=node.name,
                    error=str(e),
                )
                failures.append(f"copy from {holder.name} to {node.name}: {e}")
                if e.node is node:
                    return False  # another holder would meet the same target
                continue
            log_event(
                log, logging.INFO, "image copied", image=ref, source=holder.name, target=node.name
            )
            await shielded(self._index_inspect(node, inspect))
            return True
        return False

    # --- transfers to many nodes ------------------------------------------------
    def _broadcast(
        self,
        nodes: Sequence[Node] | None,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: AsyncIterable[bytes] | None = None,
        keep: Callable[[dict[str, Any]], bool] = lambda message: False,
        learn: Callable[[NodeResult], Coroutine[Any, Any, None]],
        inactivity: float | None = None,
    ) -> Broadcast:
        return Broadcast(
            self._ready() if nodes is None else nodes,
            "POST",
            path,
            headers=headers,
            body=body,
            inactivity=inactivity or self.images_config.pull_inactivity_timeout,
            keep=keep,
            learn=learn,
        )

    def pull_image(
        self,
        image: str,
        tag: str = "",
        *,
        auth: str | None = None,
        nodes: Sequence[Node] | None = None,
        params: Params = (),
        api_version: str = "",
        inactivity: float | None = None,
    ) -> Broadcast:
        """Pull on every ready node (or on `nodes`) at once; `start()` it, then read its
        merged progress. Each node that succeeds is indexed as holding the image. A node
        silent for `inactivity` seconds (default: the config's) is given up on."""
        query = [("fromImage", image), *([("tag", tag)] if tag else []), *params]

        async def learn(result: NodeResult) -> None:
            # A node pulled it, so the reference is one the daemon reads.
            await self.record_image(result.node, references.with_tag(image, tag))

        return self._broadcast(
            nodes,
            node_path(api_version, "/images/create", query),
            headers={"X-Registry-Auth": auth} if auth else None,
            learn=learn,
            inactivity=inactivity,
        )

    def import_image(
        self,
        source: str | AsyncIterable[bytes],
        *,
        nodes: Sequence[Node] | None = None,
        params: Params = (),
        api_version: str = "",
    ) -> Broadcast:
        """`docker import` on every ready node (or on `nodes`): `source` is a URL each node
        fetches, or a tar streamed to all of them at once."""
        from_src = source if isinstance(source, str) else "-"
        query = [("fromSrc", from_src), *params]

        async def learn(result: NodeResult) -> None:
            for message in result.kept:
                await self.record_image(result.node, str(message["status"]))

        return self._broadcast(
            nodes,
            node_path(api_version, "/images/create", query),
            headers=None if isinstance(source, str) else {"Content-Type": "application/x-tar"},
            body=None if isinstance(source, str) else source,
            keep=lambda m: str(m.get("status", "")).startswith("sha256:"),
            learn=learn,
        )

    def load_image(
        self,
        tar: AsyncIterable[bytes],
        *,
        nodes: Sequence[Node] | None = None,
        params: Params = (),
        api_version: str = "",
    ) -> Broadcast:
        """`docker load` of one tar streamed to every ready node (or to `nodes`) at once."""

        async def learn(result: NodeResult) -> None:
            for message in result.kept:
                loaded = str(message["stream"]).split(": ", 1)[1].strip()
                await self.record_image(result.node, loaded)

        return self._broadcast(
            nodes,
            node_path(api_version, "/images/load", params),
            headers={"Content-Type": "application/x-tar"},
            body=tar,
            keep=lambda m: str(m.get("stream", "")).startswith("Loaded image"),
            learn=learn,
        )

    @contextlib.asynccontextmanager
    async def push_image(
        self,
        name: str,
        tag: str = "",
        *,
        auth: str | None = None,
        params: Params = (),
        api_version: str = "",
    ) -> AsyncIterator[tuple[Node, aiohttp.ClientResponse]]:
        """Push from a node that holds the image; the node's progress as it answers."""
        try:
            ref = references.with_tag(name, tag)
        except references.InvalidReference:
            ref = name  # no node holds it: the node asked answers the daemon's own error
        query = [*([("tag", tag)] if tag else []), *params]
        path = node_path(api_version, f"/images/{quoted(name)}/push", query)
        # The daemon refuses a push with no credentials header; empty ones are "{}".
        headers = {"X-Registry-Auth": auth or NO_AUTH}
        async with self.open_on_image(ref, "POST", path, headers=headers) as answer:
            yield answer

    # --- images made on one node ------------------------------------------------
    @contextlib.asynccontextmanager
    async def build_image(
        self,
        context: AsyncIterable[bytes],
        params: Params = (),
        *,
        headers: Any = None,
        api_version: str = "",
    ) -> AsyncIterator[NodeOutput]:
        """Build on the node the scheduler picks, preferring one that holds every `FROM`
        image the Dockerfile names (when the context shows it); the image it makes is
        indexed on that node as soon as the node reports it."""
        for key, value in params:
            if key == "t" and value:
                try:
                    references.normalize(value)
                except references.InvalidReference as e:
                    # Said before the context is sent: a daemon that refuses a tag answers
                    # before it reads the context, and the upload would break on its close.
                    raise DockerError(e.message, 500) from None
        build = BuildContext(context, dict(params).get("dockerfile") or "Dockerfile")
        bases = await build.base_images()
        candidates = self._ready()
        preferred = await self.nodes_holding_all(bases, candidates) if bases else []
        node = await self.scheduler.select(preferred or candidates, SchedulingRequest())
        log_event(log, logging.INFO, "build placed", node=node.name, bases=",".join(bases))
        path = node_path(api_version, "/build", params)
        async with node.client.request(
            "POST", path, headers=headers, data=build.body()
        ) as response:
            tags = [v for k, v in params if k == "t" and v]
            yield NodeOutput(node, response, self._learn_build(node, response, tags))

    async def _learn_build(
        self, node: Node, response: aiohttp.ClientResponse, tags: Sequence[str]
    ) -> AsyncGenerator[bytes, None]:
        """The build's output as the node sends it; the image it made is indexed as soon as
        the node names it, and its tags once the output ends (the daemon tags after it
        reports the image)."""
        async with contextlib.aclosing(lines(chunks(node, response))) as output:
            async for line in output:
                if b'"aux"' in line:
                    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                        image_id = json.loads(line)["aux"]["ID"]
                        await shielded(self.record_image(node, str(image_id)))
                yield line
        for tag in tags:
            await shielded(self.record_image(node, tag))

    async def commit_container(
        self,
        container: str,
        params: Params = (),
        config: bytes | None = None,
        *,
        headers: Any = None,
        api_version: str = "",
    ) -> NodeAnswer:
        """`docker commit` on the container's node; the new image indexed there."""
        record, node = await self.locate_container(container)
        query = [("container", record.id), *((k, v) for k, v in params if k != "container")]
        path = node_path(api_version, "/commit", query)

        async def run() -> NodeAnswer:
            async with node.client.request("POST", path, headers=headers, data=config) as response:
                try:
                    body = await response.read()
                except TRANSPORT_ERRORS as e:
                    raise node.client.unavailable(e, operation_of(response)) from e
            if response.status == 201:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    await self.record_image(node, str(json.loads(body)["Id"]))
            return NodeAnswer(node, response, body)

        # What the node made must reach the index even if the caller goes away.
        return await shielded(run())

    async def schedule_image_nodes(self, image: str, candidates: Sequence[Node]) -> list[Node]:
        """Where a container of `image` can start: the candidates that hold it, or all of
        them when none does (the node then answers the daemon's own 404)."""
        return await self.nodes_holding_all([image], candidates) or list(candidates)
