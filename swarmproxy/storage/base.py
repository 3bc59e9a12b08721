"""The storage contract: what the cluster remembers and shares between proxy replicas.

The daemons are the source of truth; storage is the cluster-wide index of it. Every
implementation must pass the same contract tests (tests/test_storage_contract.py).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

# How many (node, image ID) pairs an image keeps in its history beyond one per holding node:
# a holder's newest pair must stay, as it says which image the node holds under the name.
IMAGE_HISTORY_LIMIT = 20
# How many container changes each node's change log keeps: a replica that missed more
# lists the node whole.
CHANGE_LOG_LIMIT = 64


class StorageError(Exception):
    """The storage backend failed (unreachable, protocol error)."""


class AmbiguousPrefix(Exception):
    """A container ID prefix matches more than one container."""

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.prefix = prefix


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    node: str
    # Without the leading slash; empty when the container has no proxy-known name.
    name: str = ""


@dataclass(frozen=True)
class ImageHistory:
    node: str
    image_id: str


@dataclass
class ImageRecord:
    repository: str
    nodes: set[str] = field(default_factory=set)
    last_node: str = ""
    last_id: str = ""
    last_digest: str = ""
    history: list[ImageHistory] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeLog:
    """What storage says of one node's changed containers since a count the caller saw."""

    # Changes noted on the node so far (back to 0 when storage was wiped).
    count: int
    # The containers changed after the count asked about, newest first; None when more
    # changed than the log keeps, or the count went back.
    ids: list[str] | None


def changes_after(count: int, seen: int, newest_first: list[str]) -> list[str] | None:
    """The part of a node's change log after the count `seen`, if the log still holds it."""
    fresh = count - seen
    if fresh < 0 or fresh > CHANGE_LOG_LIMIT:
        return None
    return newest_first[:fresh]


@dataclass
class HealingData:
    locked_until: float = 0.0
    is_failure: bool = False


@dataclass
class NodeRecord:
    address: str
    name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    creation_status: str = "created"
    healing: HealingData = field(default_factory=HealingData)
    # The health every proxy replica shares: failures since the last success, the last
    # error and success (wall-clock seconds), and until when a healer disabled the node.
    failures: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    last_success_at: float = 0.0
    disabled_until: float = 0.0
    # PEM texts by item ("ca", "cert", "key") for a node reached over TLS: kept here, not
    # as file paths, so that a replica on another host can reach the node too.
    tls: dict[str, str] = field(default_factory=dict)


class Storage(abc.ABC):
    """Async storage. Node identity is its address; container and exec IDs are full IDs."""

    # --- containers -------------------------------------------------------------
    @abc.abstractmethod
    async def store_container(self, container_id: str, node: str, name: str = "") -> None:
        """Map a container to its node; `name` (if given) is recorded as its name."""

    @abc.abstractmethod
    async def retrieve_container(self, container_id: str) -> ContainerRecord | None:
        """Exact full-ID lookup."""

    @abc.abstractmethod
    async def remove_container(self, container_id: str) -> None:
        """Drop the mapping, the container's name (if it still points at it) and its execs."""

    @abc.abstractmethod
    async def retrieve_containers(self) -> list[ContainerRecord]: ...

    @abc.abstractmethod
    async def resolve_container_prefix(self, prefix: str) -> str | None:
        """The one full ID starting with `prefix`; None if none; AmbiguousPrefix if several."""

    # --- names ------------------------------------------------------------------
    @abc.abstractmethod
    async def reserve_name(self, name: str, owner: str) -> str | None:
        """Atomically claim `name` for `owner` (a container ID or a pending token).

        Returns None when the claim succeeded, otherwise the current owner.
        """

    @abc.abstractmethod
    async def assign_name(self, name: str, container_id: str, expected_owner: str) -> bool:
        """Move a reserved name from `expected_owner` to `container_id` and record it on the
        container. False if the name is no longer owned by `expected_owner`."""

    @abc.abstractmethod
    async def retrieve_name(self, name: str) -> str | None:
        """The owner of a name (a container ID, or a pending token)."""

    @abc.abstractmethod
    async def release_name(self, name: str, owner: str) -> None:
        """Free `name` only if `owner` still holds it."""

    # --- execs ------------------------------------------------------------------
    @abc.abstractmethod
    async def store_exec(self, exec_id: str, container_id: str) -> None: ...

    @abc.abstractmethod
    async def retrieve_exec(self, exec_id: str) -> str | None:
        """The container ID of an exec."""

    @abc.abstractmethod
    async def remove_exec(self, exec_id: str) -> None: ...

    # --- images -----------------------------------------------------------------
    @abc.abstractmethod
    async def store_image(self, repository: str, image_id: str, node: str) -> None:
        """Record that `node` holds `repository` as `image_id`: adds the node, sets last node
        and last ID, appends to the bounded history."""

    @abc.abstractmethod
    async def retrieve_image(self, repository: str) -> ImageRecord | None: ...

    @abc.abstractmethod
    async def remove_image(self, repository: str, image_id: str, node: str) -> None:
        """Drop `node` (and its history entries for `image_id`); the record goes when no
        node holds it any more."""

    @abc.abstractmethod
    async def set_image_digest(self, repository: str, digest: str) -> None: ...

    @abc.abstractmethod
    async def retrieve_images(self) -> list[ImageRecord]: ...

    # --- nodes ------------------------------------------------------------------
    @abc.abstractmethod
    async def store_node(self, node: NodeRecord) -> None:
        """Register a node; raises ValueError if the address is already registered."""

    @abc.abstractmethod
    async def retrieve_nodes(self) -> list[NodeRecord]: ...

    @abc.abstractmethod
    async def retrieve_nodes_by_metadata(self, metadata: dict[str, str]) -> list[NodeRecord]:
        """Nodes whose metadata contains every given key with the given value."""

    @abc.abstractmethod
    async def retrieve_node(self, address: str) -> NodeRecord | None: ...

    @abc.abstractmethod
    async def update_node(self, node: NodeRecord) -> None:
        """Replace a registered node; raises KeyError if it is not registered."""

    @abc.abstractmethod
    async def remove_node(self, address: str) -> None:
        """Raises KeyError if the node is not registered."""

    @abc.abstractmethod
    async def remove_nodes(self, addresses: list[str]) -> None: ...

    @abc.abstractmethod
    async def lock_node_for_healing(self, address: str, is_failure: bool, timeout: float) -> bool:
        """Take the node's healing lock for `timeout` seconds; False if someone holds it."""

    @abc.abstractmethod
    async def extend_node_lock(self, address: str, timeout: float) -> None: ...

    @abc.abstractmethod
    async def unlock_node(self, address: str) -> None: ...

    # --- volumes ----------------------------------------------------------------
    # A volume is known by its name on its node: the same name on two nodes is two volumes,
    # so the index keeps, per name, the set of node addresses holding one.
    @abc.abstractmethod
    async def store_volume(self, name: str, node: str) -> None:
        """Record that `node` holds a volume named `name`."""

    @abc.abstractmethod
    async def retrieve_volume(self, name: str) -> set[str]:
        """The addresses of the nodes holding a volume named `name`; empty when none."""

    @abc.abstractmethod
    async def remove_volume(self, name: str, node: str) -> None:
        """Forget `node`'s volume named `name`; the name goes when no node holds it."""

    @abc.abstractmethod
    async def retrieve_volumes(self) -> dict[str, set[str]]:
        """Every indexed volume name, with the addresses of the nodes holding it."""

    # --- counters ---------------------------------------------------------------
    @abc.abstractmethod
    async def increment(self, key: str) -> int:
        """Add one to the counter `key`, atomically across replicas; its new value (the
        first call gives 1)."""

    @abc.abstractmethod
    async def counter(self, key: str) -> int:
        """The counter's value, unchanged; 0 for one never incremented."""

    # --- container changes ------------------------------------------------------
    # Each replica keeps every node's container list in process: the containers one of
    # them changes are noted here, so that the next `ps` in any replica reads them afresh.
    @abc.abstractmethod
    async def note_container_change(self, node: str, container_id: str) -> None:
        """Count a change to a container on `node`, and keep its ID in the node's log."""

    @abc.abstractmethod
    async def container_changes(self, since: dict[str, int]) -> dict[str, ChangeLog]:
        """For each node address in `since`, its count and what changed after `since`'s."""

    # --- rescheduling -----------------------------------------------------------
    # Containers to make again elsewhere when their node stays down, each with its plan
    # (a JSON text the cluster writes and reads; storage does not look inside).
    @abc.abstractmethod
    async def store_reschedulable(self, container_id: str, plan: str) -> None: ...

    @abc.abstractmethod
    async def retrieve_reschedulables(self) -> dict[str, str]: ...

    @abc.abstractmethod
    async def remove_reschedulable(self, container_id: str) -> None: ...

    # --- lifecycle --------------------------------------------------------------
    async def ping(self) -> None:
        """Raise StorageError if the backend cannot be reached."""

    async def close(self) -> None:
        """Release connections."""
