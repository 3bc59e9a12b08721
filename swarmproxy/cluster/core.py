"""The cluster: nodes, their health, and the index of what lives where.

Usable as a library: it speaks to nodes through their clients and to storage, and knows
nothing of the HTTP requests that the front receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from swarmproxy.cluster import versions
from swarmproxy.cluster.container_lists import ContainerLists
from swarmproxy.cluster.containers import ContainerOperations
from swarmproxy.cluster.creation import ContainerCreation
from swarmproxy.cluster.dry import DryNodeClient, dry_copy
from swarmproxy.cluster.healer import BackoffHealer, Healer, load_healer
from swarmproxy.cluster.healing import NodeHealing
from swarmproxy.cluster.healing import apply as apply_health
from swarmproxy.cluster.health import Listener
from swarmproxy.cluster.hooks import EVENTS, Hook, HookRefused, Hooks, load_hook
from swarmproxy.cluster.images import ImageOperations
from swarmproxy.cluster.networks import NetworkOperations
from swarmproxy.cluster.node import Node
from swarmproxy.cluster.placement import Placing
from swarmproxy.cluster.reconcile import Reconciliation
from swarmproxy.cluster.registry import NodeRegistry, record_of
from swarmproxy.cluster.rescheduling import Rescheduling
from swarmproxy.cluster.route_cache import RouteCache
from swarmproxy.cluster.volumes import VolumeOperations
from swarmproxy.cluster.watch import NodeWatcher, refresh_load
from swarmproxy.config import Config, HealthConfig, ImagesConfig
from swarmproxy.errors import (
    DockerError,
    NameConflict,
    NodeDisabled,
    NodeUnavailable,
    NoNodeAvailable,
    NoSuchContainer,
    NoSuchExec,
    StorageUnavailable,
    node_message,
)
from swarmproxy.log import log_event
from swarmproxy.node_client import TRANSPORT_ERRORS, NodeClient
from swarmproxy.scheduler import Scheduler, make_scheduler
from swarmproxy.scheduler.filters import FILTERS, make_filters
from swarmproxy.scheduler.filters.base import Filter
from swarmproxy.storage import (
    AmbiguousPrefix,
    ContainerRecord,
    MemoryStorage,
    Storage,
    StorageError,
    open_storage,
)
from swarmproxy.storage.resilient import Outage, ResilientStorage
from swarmproxy.tasks import stopped

log = logging.getLogger("swarmproxy.cluster")

T = TypeVar("T")

# Seconds between two readings of a healthy node's versions and info.
DESCRIBE_SECONDS = 60.0
# How long the cluster's API versions are taken as they were last worked out.
VERSIONS_SECONDS = 0.5

# `fan_out`'s timeout when none is given: the configured node_timeout.
DEFAULT: Any = object()

# Set in storage once nodes are registered: storage without it has been wiped (or is new),
# and its empty registry does not mean that every node was unregistered.
REGISTRY = "registry"

# A name held by a create that has not answered yet.
PENDING_PREFIX = "pending:"
_FULL_ID = re.compile(r"^[0-9a-f]{64}$")


def _pending_age(owner: str) -> float:
    """Seconds since a pending claim was made; 0 for a container ID."""
    if not owner.startswith(PENDING_PREFIX):
        return 0.0
    try:
        return time.time() - int(owner.rsplit(":", 1)[1])
    except ValueError:
        return float("inf")


def ambiguous(prefix: str) -> DockerError:
    # The daemon answers an ambiguous prefix with a 500 carrying truncindex's message.
    return DockerError(f"multiple IDs found with provided prefix: {prefix}", 500)


@dataclass(frozen=True)
class NameClaim:
    """A name reserved cluster-wide for a container being created."""

    name: str
    token: str


class Cluster(
    ContainerLists,
    VolumeOperations,
    NetworkOperations,
    ImageOperations,
    NodeRegistry,
    Placing,
    ContainerCreation,
    ContainerOperations,
    Reconciliation,
    Rescheduling,
):
    def __init__(
        self,
        nodes: Sequence[Node],
        storage: Storage,
        scheduler: Scheduler,
        health: HealthConfig | None = None,
        images: ImagesConfig | None = None,
        healer: Healer | None = None,
        max_attempts: int = 3,
        filters: Sequence[Filter] | None = None,
        *,
        reconcile_interval: float = 60.0,
        reschedule_grace: float = 60.0,
    ) -> None:
        self.nodes: list[Node] = []
        self._by_address: dict[str, Node] = {}
        self._routes = RouteCache()
        # The ready nodes' API versions, and until when (monotonic) they hold.
        self._versions_known = (versions.FALLBACK_API_VERSION, versions.FALLBACK_MIN_API_VERSION)
        self._versions_until = 0.0
        self.storage = storage
        self.scheduler = scheduler
        if getattr(scheduler, "storage", False) is None:
            # What replicas share (a rotation's turn) lives in the cluster's storage.
            scheduler.storage = storage
        self.max_attempts = max_attempts
        self.filters: list[Filter] = list(filters) if filters is not None else make_filters(FILTERS)
        self.health_config = health or HealthConfig()
        self.healing = NodeHealing(storage, healer or BackoffHealer())
        self.hooks = Hooks()
        # Decisions about nodes' health under way, run beside the requests that caused them.
        self._background: set[asyncio.Task[None]] = set()
        # Per node, the task that follows its destroy events; started with the cluster.
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._started = False
        self._monitor: asyncio.Task[None] | None = None
        self.reconcile_interval = reconcile_interval
        self.reschedule_grace = reschedule_grace
        self._reconciler: asyncio.Task[None] | None = None
        for node in nodes:
            self._add_node(node)
        self.images_config = images or ImagesConfig()
        # Per container being renamed: its lock, and how many renames hold or await it.
        self._renames: dict[str, tuple[asyncio.Lock, int]] = {}
        # In dry mode: no daemon is called, and the real cluster is kept for stop_dry_mode.
        self.dry = False
        self.client_class: type[NodeClient] = NodeClient
        self._real: Cluster | None = None

    @classmethod
    def from_config(cls, config: Config) -> Cluster:
        nodes = [Node(n.name, n.address, dict(n.labels), tls=n.tls) for n in config.nodes]
        storage = open_storage(config.storage.url, config.storage.prefix)
        if not isinstance(storage, MemoryStorage):
            # A shared backend can fail apart from the proxy: serve on through its outage.
            storage = ResilientStorage(storage)
        scheduler = make_scheduler(config.scheduler.strategy, storage)
        healer = load_healer(config.health.healer)
        cluster = cls(
            nodes,
            storage,
            scheduler,
            config.health,
            config.images,
            healer,
            config.scheduler.max_attempts,
            make_filters(config.scheduler.filters),
            reconcile_interval=config.storage.reconcile_interval,
            reschedule_grace=config.scheduler.reschedule_grace,
        )
        for event in EVENTS:
            for spec in getattr(config.hooks, event):
                cluster.add_hook(event, load_hook(spec))
        if isinstance(storage, ResilientStorage):
            # What was done while storage was away is learned again from the nodes.
            storage.on_recovery.append(lambda: cluster._in_background(cluster._reconcile_once()))
        return cluster

    @property
    def storage_outage(self) -> Outage | None:
        """Since when, and why, storage is unreachable; None while it answers."""
        return self.storage.outage if isinstance(self.storage, ResilientStorage) else None

    # --- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        await self.storage.ping()
        for node in list(self.nodes):
            if await self.storage.retrieve_node(node.address) is None:
                await self._register_configured(node)
        if await self.storage.counter(REGISTRY) == 0:
            await self.storage.increment(REGISTRY)
        await self.refresh_health()
        await self.check_nodes()
        self._started = True
        for node in self.nodes:
            self._watch(node)
        self.start_monitoring()
        self._reconciler = asyncio.create_task(self._reconcile_loop(), name="reconcile")

    async def _reconcile_loop(self) -> None:
        """At start, then every `reconcile_interval` seconds."""
        while True:
            await self._reconcile_once()
            await asyncio.sleep(self.reconcile_interval)

    async def _reconcile_once(self) -> None:
        try:
            await self.reconcile()
        except (DockerError, StorageError) as e:
            log_event(log, logging.WARNING, "index not reconciled", error=str(e))

    async def _restore_registry(self) -> None:
        """Storage lost the node registry (wiped, or a new empty server): every node this
        process serves is registered again as it knows it, and the index is rebuilt from
        the nodes at once."""
        for node in self.nodes:
            # ValueError: another replica restored it first.
            with contextlib.suppress(ValueError):
                await self.storage.store_node(record_of(node))
        await self.storage.increment(REGISTRY)
        log_event(log, logging.WARNING, "storage found empty: node registry restored")
        self._in_background(self._reconcile_once())

    async def _register_configured(self, node: Node) -> None:
        """Register a node given at construction (from the config) that storage does not
        know yet, through the `before_node_register` hooks like any other: one they refuse
        is not served."""
        record = record_of(node)
        try:
            await self.hooks.run("before_node_register", record)
        except HookRefused as e:
            log_event(log, logging.ERROR, "node refused", node=node.name, why=e.message)
            await self._drop_node(node.address)
            return
        node.name = node.client.name = record.name
        self._take_record(record)
        # ValueError: another replica registered it at the same moment.
        with contextlib.suppress(ValueError):
            await self.storage.store_node(record)

    async def dry_mode(self) -> Cluster:
        """A copy of the cluster over an in-memory copy of its storage, for "what would
        happen if" planning: placements (the same scheduler state, hooks and health) and
        registrations are computed and recorded there, and no daemon is called. The real
        cluster is left as it is; `stop_dry_mode()` on the copy returns to it."""
        storage = await MemoryStorage.copy_of(self.storage)
        scheduler = (
            await self.scheduler.for_dry_mode(storage)
            if isinstance(self.scheduler, Scheduler)
            else copy.copy(self.scheduler)
        )
        dry = type(self)(
            [dry_copy(n) for n in self.nodes],
            storage,
            scheduler,
            self.health_config,
            self.images_config,
            self.healing.healer,
            self.max_attempts,
            self.filters,
        )
        dry.hooks = self.hooks
        dry.dry = True
        dry.client_class = DryNodeClient
        dry._real = self
        return dry

    async def stop_dry_mode(self) -> Cluster:
        """Drop this dry copy (its plans with it) and give back the real cluster."""
        if self._real is None:
            raise RuntimeError("not a dry-mode cluster")
        await self.close()
        return self._real

    def start_monitoring(self) -> None:
        """Ping every node each `health.interval` (started with the cluster)."""
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.create_task(self._monitor_loop(), name="node-health")

    async def stop_monitoring(self) -> None:
        """No more pings: nodes keep the status they have until monitoring starts again."""
        if self._monitor is not None:
            await stopped([self._monitor])
            self._monitor = None

    def _watch(self, node: Node) -> None:
        task = asyncio.create_task(
            NodeWatcher(node, self.storage, self.forget_container).run(), name=f"watch-{node.name}"
        )
        self._watchers[node.address] = task

    def _add_node(self, node: Node) -> None:
        self._versions_until = 0.0
        node.health.listener = self._health_listener(node)
        self.nodes.append(node)
        self._by_address[node.address] = node
        if self._started:
            self._watch(node)

    async def _drop_node(self, address: str) -> None:
        self._versions_until = 0.0
        node = self._by_address.pop(address, None)
        if node is None:
            return
        self.nodes.remove(node)
        watcher = self._watchers.pop(address, None)
        if watcher is not None:
            await stopped([watcher])
        await node.client.close()

    async def close(self) -> None:
        await self.stop_monitoring()
        reconciler = [self._reconciler] if self._reconciler is not None else []
        await stopped([*self._background, *self._watchers.values(), *reconciler])
        await asyncio.gather(*(n.client.close() for n in self.nodes), return_exceptions=True)
        await self.storage.close()

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_config.interval)
            await self.refresh_health()
            await self.check_nodes()
            try:
                await self.reschedule_lost()
            except (DockerError, StorageError) as e:
                log_event(log, logging.WARNING, "rescheduling postponed", error=str(e))

    async def check_nodes(self) -> None:
        results = await asyncio.gather(
            *(self.check_node(n) for n in self.nodes), return_exceptions=True
        )
        for node, result in zip(self.nodes, results, strict=True):
            if isinstance(result, Exception):
                # The health loop must outlive any surprise from one node.
                log.error(
                    "health check failed", exc_info=result, extra={"fields": {"node": node.name}}
                )

    async def check_node(self, node: Node) -> None:
        """Ping a node (`/_ping`, bounded by the health timeout): its answer or its failure
        feeds its health. Its versions and info are read when first seen, after it comes
        back, and once a minute."""
        if self.dry:
            # A plan takes a node for what it is said to be: registered means ready.
            node.health.record_success()
            return
        was_ready = node.health.ready
        timeout = self.health_config.timeout
        try:
            async with node.client.request("GET", "/_ping", timeout=timeout) as response:
                await response.read()
            stale = time.monotonic() - node.described_at > DESCRIBE_SECONDS
            joining = not node.api_version
            if not was_ready or joining or stale:
                await self._describe(node, timeout)
                # Beside the pings, not in their way: a node may hold many containers.
                self._in_background(refresh_load(node))
            if joining:
                await self._learn_images(node)
        except (NodeUnavailable, *TRANSPORT_ERRORS) as e:
            if was_ready:
                log_event(log, logging.WARNING, "node down", node=node.name, error=str(e))

    async def _learn_images(self, node: Node) -> None:
        try:
            await asyncio.wait_for(self.learn_images(node), self.health_config.node_timeout)
        except (DockerError, StorageError, TimeoutError) as e:
            # Lookups find the images anyway, a node at a time; this only saves them that.
            log_event(log, logging.WARNING, "images not learned", node=node.name, error=str(e))

    async def _describe(self, node: Node, timeout: float) -> None:
        version = await node.client.version(timeout)
        node.info = await node.client.info(timeout)
        node.described_at = time.monotonic()
        node.api_version = version.get("ApiVersion", "")
        node.min_api_version = version.get("MinAPIVersion", "")
        node.engine_version = version.get("Version", "")
        self._versions_until = 0.0

    async def refresh_health(self) -> None:
        """Take the registered nodes, and every node's shared health, from storage, as
        other replicas left them."""
        generations = {n.address: n.generation for n in self.nodes}
        try:
            stored = await self.storage.retrieve_nodes()
            if not stored and self.nodes and await self.storage.counter(REGISTRY) == 0:
                # Not every node unregistered (that leaves the mark): storage was wiped.
                await self._restore_registry()
                stored = await self.storage.retrieve_nodes()
        except StorageError as e:
            log_event(log, logging.WARNING, "node records unreadable", error=str(e))
            return
        await self.sync_nodes(stored)
        records = {r.address: r for r in stored}
        for node in self.nodes:
            record = records.get(node.address)
            # Not over a change made here since the reading began (its record is newer).
            unchanged = generations.get(node.address) == node.generation
            if record is not None and unchanged and not self.healing.deciding(node.address):
                apply_health(node, record)
                self._take_record(record)

    def _health_listener(self, node: Node) -> Listener:
        """What a node's health calls on a failure or a recovery: the shared decision, run
        beside the request that saw it."""

        def changed(ok: bool, error: str) -> None:
            self._versions_until = 0.0
            self._in_background(self.healing.decide(node, ok, error))

        return changed

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside what asked for it; cancelled when the cluster closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log_event(log, logging.WARNING, "background work failed", error=str(error))

    # --- nodes ------------------------------------------------------------------
    def node(self, address: str) -> Node:
        """The node at `address`, to call now: a disabled or healing one fails fast with a
        503 naming it, rather than leaving the caller to wait on a node known to be down."""
        node = self._by_address.get(address)
        if node is None:
            # The index names a node this process does not know (removed from its config).
            raise NoNodeAvailable(f"node {address} is not part of this cluster")
        if not node.health.callable:
            raise NodeDisabled(node.name, node.address, node.health.describe())
        return node

    def ready_nodes(self) -> list[Node]:
        """The nodes that may take new containers."""
        return [n for n in self.nodes if n.ready]

    def callable_nodes(self) -> list[Node]:
        """The nodes worth calling: neither disabled nor healing."""
        return [n for n in self.nodes if n.health.callable]

    @property
    def api_version(self) -> str:
        return self._versions()[0]

    @property
    def min_api_version(self) -> str:
        return self._versions()[1]

    def _versions(self) -> tuple[str, str]:
        """The API versions every ready node speaks, highest and lowest. Every request asks
        (the version check, the `Api-Version` header): over many nodes they are worked out
        again only after VERSIONS_SECONDS, a lag shorter than health's own."""
        now = time.monotonic()
        if now >= self._versions_until:
            ready = self.ready_nodes()
            self._versions_known = (
                versions.lowest((n.api_version for n in ready), versions.FALLBACK_API_VERSION),
                versions.highest(
                    (n.min_api_version for n in ready), versions.FALLBACK_MIN_API_VERSION
                ),
            )
            self._versions_until = now + VERSIONS_SECONDS
        return self._versions_known

    async def fan_out(
        self,
        call: Callable[[Node], Awaitable[T]],
        nodes: Sequence[Node] | None = None,
        timeout: float | None = DEFAULT,
    ) -> list[tuple[Node, T | BaseException]]:
        """Run `call` on every node at once; a node's failure is its result, not an error.
        A node gets `node_timeout` to answer unless `timeout` says otherwise (None: no bound,
        for work that takes as long as it takes, a removal or a prune)."""
        targets = list(self.callable_nodes() if nodes is None else nodes)
        if timeout is DEFAULT:
            timeout = self.health_config.node_timeout

        async def bounded(node: Node) -> T:
            try:
                return await asyncio.wait_for(call(node), timeout)
            except TimeoutError as e:
                reason = TimeoutError(f"no answer within {timeout or 0:g}s")
                raise node.client.unavailable(reason) from e

        results = await asyncio.gather(*(bounded(n) for n in targets), return_exceptions=True)
        for node, result in zip(targets, results, strict=True):
            if isinstance(result, NodeUnavailable):
                log_event(
                    log,
                    logging.WARNING,
                    "node left out",
                    node=node.name,
                    addr=node.address,
                    error=result.message,
                )
        return list(zip(targets, results, strict=True))

    async def fan_out_json(
        self, method: str, path: str, timeout: float | None = DEFAULT
    ) -> list[tuple[Node, Any]]:
        """Every reachable node's JSON answer. A down node is left out (and logged); a node's
        refusal (a bad filter, say) is the answer, as every node judges a query alike."""
        answers = []
        calls = await self.fan_out(lambda n: n.client.json(method, path), timeout=timeout)
        for node, result in calls:
            if isinstance(result, NodeUnavailable):
                continue
            if isinstance(result, BaseException):
                raise result
            status, body = result
            if not 200 <= status < 300:
                raise DockerError(node_message(body, status), status)
            answers.append((node, body))
        return answers

    # --- containers -------------------------------------------------------------
    async def locate_container(self, ref: str) -> tuple[ContainerRecord, Node]:
        """Resolve a full ID, a name or a unique ID prefix, in the daemon's order."""
        if not ref:
            raise NoSuchContainer(ref)
        record = await self._lookup_container(ref)
        if record is None:
            record = await self._discover_container(ref)
        self._routes.keep(record.id, record.node)
        return record, self.node(record.node)

    async def route_container(self, ref: str) -> tuple[str, Node]:
        """The full ID and node of a container, for a call to it: as `locate_container`,
        but a full ID is looked up in storage only once in this process."""
        address = self._routes.get(ref)
        if address is not None and address in self._by_address:
            return ref, self.node(address)
        record, node = await self.locate_container(ref)
        return record.id, node

    async def container_name(self, container_id: str) -> str:
        """The container's name as the index knows it now ("" for none)."""
        record = await self.storage.retrieve_container(container_id)
        return record.name if record is not None else ""

    async def _lookup_container(self, ref: str) -> ContainerRecord | None:
        storage = self.storage
        if _FULL_ID.match(ref):
            record = await storage.retrieve_container(ref)
            if record is not None:
                return record
        owner = await storage.retrieve_name(ref.removeprefix("/"))
        if owner is not None and not owner.startswith(PENDING_PREFIX):
            record = await storage.retrieve_container(owner)
            if record is not None:
                return record
        try:
            full_id = await storage.resolve_container_prefix(ref)
        except AmbiguousPrefix:
            raise ambiguous(ref) from None
        return None if full_id is None else await storage.retrieve_container(full_id)

    async def _discover_container(self, ref: str) -> ContainerRecord:
        """A miss in the index asks the nodes themselves before answering 404: a container
        made behind the proxy's back, or an index that lost an entry, is found again."""

        async def inspect(node: Node) -> tuple[str, str] | None:
            status, body = await node.client.json("GET", f"/containers/{quote(ref, safe='')}/json")
            if status != 200:
                return None
            return body["Id"], body.get("Name", "").removeprefix("/")

        found: dict[str, tuple[Node, str]] = {}
        for node, result in await self.fan_out(inspect):
            if isinstance(result, tuple):
                found[result[0]] = (node, result[1])
        if not found:
            raise NoSuchContainer(ref)
        if len(found) > 1:
            raise ambiguous(ref)
        ((container_id, (node, name)),) = found.items()
        await self.adopt_container(container_id, node, name)
        return ContainerRecord(container_id, node.address, name)

    async def adopt_container(self, container_id: str, node: Node, name: str) -> None:
        """Index a container found on a node, with its name if the name is free."""
        await self.storage.store_container(container_id, node.address)
        if name:
            await self.index_name(container_id, node, name)
        log_event(log, logging.INFO, "container adopted", node=node.name, container=container_id)

    async def claim_name(self, name: str) -> NameClaim:
        """Reserve a name cluster-wide before the create reaches a node."""
        name = name.removeprefix("/")
        claim = NameClaim(name, f"{PENDING_PREFIX}{uuid.uuid4().hex}:{int(time.time())}")
        try:
            owner = await self._reserve(claim)
        except StorageError as e:
            await asyncio.shield(self.release_claim(claim))
            # Refused rather than risk one name for two containers on two nodes.
            raise StorageUnavailable(f"cannot reserve the name {name!r} cluster-wide: {e}") from e
        except BaseException:
            # Cancelled (its client went away) or failed once the reservation may be written:
            # a claim nobody will use must not hold the name until it is stale.
            await asyncio.shield(self.release_claim(claim))
            raise
        if owner is not None:
            shown = "(being created)" if owner.startswith(PENDING_PREFIX) else owner
            raise NameConflict(name, shown)
        return claim

    async def _reserve(self, claim: NameClaim) -> str | None:
        """Take the name for the claim; the owner that keeps it, or None when it is ours."""
        name, token = claim.name, claim.token
        owner = await self.storage.reserve_name(name, token)
        stale = (
            owner is not None
            and not owner.startswith(PENDING_PREFIX)
            and not await self._container_exists(owner)
        )
        if stale:
            # Removed behind the proxy's back: the name is free on every node.
            await self.storage.remove_container(str(owner))
            owner = await self.storage.reserve_name(name, token)
        if owner is not None and _pending_age(owner) > self.health_config.pending_name_timeout:
            owner = await self._take_over_pending(name, owner, token)
        return owner

    async def _take_over_pending(self, name: str, pending: str, token: str) -> str | None:
        """A claim whose create never answered (its proxy died): if a node holds a container
        of that name, the create went through and the container keeps the name; otherwise the
        claim is taken over. Returns the owner that stays, or None when the name is ours."""
        holders = await self.find_by_name(name)
        if holders:
            node, container_id = holders[0]
            await self.storage.store_container(container_id, node.address)
            await self.storage.assign_name(name, container_id, pending)
            return container_id
        if await self.storage.assign_name(name, token, pending):
            log_event(log, logging.WARNING, "stale name claim taken over", name=name)
            return None
        return await self.storage.retrieve_name(name)

    async def find_by_name(self, name: str) -> list[tuple[Node, str]]:
        """The containers named exactly `name` on the reachable nodes."""
        filters = quote(json.dumps({"name": [f"^/{re.escape(name)}$"]}))
        found = await self.fan_out_json("GET", f"/containers/json?all=1&filters={filters}")
        return [(node, c["Id"]) for node, listing in found for c in listing or []]

    async def _container_exists(self, container_id: str) -> bool:
        """Only a node's own 404 says no; an unreachable node may still hold it."""
        record = await self.storage.retrieve_container(container_id)
        if record is None or self.dry:
            return record is not None
        node = self._by_address.get(record.node)
        if node is None:
            return True
        try:
            status, _ = await node.client.json("GET", f"/containers/{container_id}/json")
        except NodeUnavailable:
            return True
        return status != 404

    async def release_claim(self, claim: NameClaim | None) -> None:
        if claim is not None:
            await self.storage.release_name(claim.name, claim.token)

    def add_hook(self, event: str, hook: Hook) -> None:
        """Run `hook` before `event` (see cluster.hooks)."""
        self.hooks.add(event, hook)

    async def container_created(
        self, container_id: str, node: Node, claim: NameClaim | None
    ) -> None:
        await self.storage.store_container(container_id, node.address)
        if claim is not None:
            if not await self.storage.assign_name(claim.name, container_id, claim.token):
                log_event(
                    log,
                    logging.ERROR,
                    "name claim lost",
                    node=node.name,
                    container=container_id,
                    name=claim.name,
                )
        elif not self.dry:
            # The daemon chose the name: reserve it too, or another node could reuse it.
            await self._index_daemon_name(container_id, node)
        log_event(
            log,
            logging.INFO,
            "container created",
            node=node.name,
            container=container_id,
            name=claim.name if claim else "",
        )

    @contextlib.asynccontextmanager
    async def renaming(self, container_id: str) -> AsyncIterator[None]:
        """Renames of one container go to its node one at a time (in this process), so that
        each one's answer is learned against the name the one before it left."""
        lock, users = self._renames.get(container_id, (asyncio.Lock(), 0))
        self._renames[container_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._renames[container_id]
            if users == 1:
                del self._renames[container_id]
            else:
                self._renames[container_id] = (lock, users - 1)

    async def container_renamed(self, container_id: str, node: Node, claim: NameClaim) -> None:
        """After a node's 204: what the node now calls the container decides, since two
        renames of one container may have raced (through two proxies)."""
        actual = await self._daemon_name(node, container_id)
        if actual != claim.name:
            await self.release_claim(claim)
            return
        record = await self.storage.retrieve_container(container_id)
        await self.storage.assign_name(claim.name, container_id, claim.token)
        if record is not None and record.name and record.name != claim.name:
            await self.storage.release_name(record.name, container_id)

    async def _daemon_name(self, node: Node, container_id: str) -> str:
        return (await node.client.inspect_field(container_id, "Name")).removeprefix("/")

    async def _index_daemon_name(self, container_id: str, node: Node) -> None:
        name = await self._daemon_name(node, container_id)
        if name:
            await self.index_name(container_id, node, name)

    async def index_name(self, container_id: str, node: Node, name: str) -> None:
        """Give an indexed container the name its node knows it by, unless another holds it."""
        try:
            owner = await self.storage.reserve_name(name, container_id)
        except StorageError as e:
            # The container is indexed all the same; its name is, at the next reconciliation.
            log_event(log, logging.WARNING, "name not indexed", name=name, error=str(e))
            return
        if owner is None or owner == container_id:
            await self.storage.assign_name(name, container_id, container_id)
        elif owner.startswith(PENDING_PREFIX):
            # A create that claimed the name and never told the index (its proxy died):
            # the container a node made under that name is the claim's outcome.
            await self.storage.assign_name(name, container_id, owner)
        else:
            log_event(
                log,
                logging.WARNING,
                "name held by another container",
                node=node.name,
                container=container_id,
                name=name,
                owner=owner,
            )

    async def forget_container(self, container_id: str) -> None:
        self._routes.drop(container_id)
        await self.storage.remove_container(container_id)
        await self.storage.remove_reschedulable(container_id)

    async def forget_containers(self, container_ids: Sequence[str]) -> None:
        for container_id in container_ids:
            self._routes.drop(container_id)
        await asyncio.gather(*(self.storage.remove_container(cid) for cid in container_ids))

    # --- execs ------------------------------------------------------------------
    async def _discover_exec(self, exec_id: str) -> str:
        """A miss asks the nodes, as for containers: the exec's container, indexed."""
        path = f"/exec/{quote(exec_id, safe='')}/json"
        for _node, result in await self.fan_out(lambda n: n.client.json("GET", path)):
            if isinstance(result, tuple) and result[0] == 200 and isinstance(result[1], dict):
                container_id = str(result[1].get("ContainerID", ""))
                if container_id:
                    await self.storage.store_exec(exec_id, container_id)
                    return container_id
        raise NoSuchExec(exec_id)

    async def exec_created(self, exec_id: str, container_id: str) -> None:
        await self.storage.store_exec(exec_id, container_id)

    async def locate_exec(self, exec_id: str) -> tuple[str, Node]:
        container_id = await self.storage.retrieve_exec(exec_id)
        if container_id is None:
            container_id = await self._discover_exec(exec_id)
        try:
            record, node = await self.locate_container(container_id)
        except NoSuchContainer:
            raise NoSuchExec(exec_id) from None
        return record.id, node
