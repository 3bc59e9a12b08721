"""Errors with the Docker daemon's status codes, raised by the cluster core and the HTTP front.

The HTTP front turns each into the daemon's error body, `{"message": ...}`.
"""

from __future__ import annotations

from collections.abc import Sequence


class DockerError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(DockerError):
    status = 400


def naming_nodes(said: Sequence[tuple[str, str]]) -> str:
    """(node, message) pairs as one message, each distinct message naming its nodes:
    `refused (on node-1, node-3); reset (on node-2)`."""
    by_message: dict[str, list[str]] = {}
    for node, message in said:
        by_message.setdefault(message, []).append(node)
    return "; ".join(f"{message} (on {', '.join(nodes)})" for message, nodes in by_message.items())


def node_message(body: object, status: int) -> str:
    """The message of a node's error answer (`{"message": ...}`), or its status."""
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"status {status}"


class NotFound(DockerError):
    status = 404


class Conflict(DockerError):
    status = 409


class NoSuchContainer(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")


class NoSuchExec(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such exec instance: {ref}")


class NameConflict(Conflict):
    def __init__(self, name: str, owner: str) -> None:
        super().__init__(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{owner}". You have to remove (or rename) that container to be able to '
            "reuse that name."
        )


class NodeUnavailable(DockerError):
    """A node could not be reached or failed at the transport level."""

    status = 502

    def __init__(self, node_name: str, address: str, reason: str, operation: str = "") -> None:
        # The seed's DockerNodeError: the node, and what was asked of it when it failed.
        during = f" (in {operation})" if operation else ""
        super().__init__(f"node {node_name} ({address}) is unavailable: {reason}{during}")
        self.node_name = node_name


class NodeDisabled(DockerError):
    """A node known to be down: answered at once, without calling it."""

    status = 503

    def __init__(self, node_name: str, address: str, health: str) -> None:
        super().__init__(f"node {node_name} ({address}) is {health}")
        self.node_name = node_name


class NoNodeAvailable(DockerError):
    status = 503

    def __init__(self, reason: str = "no healthy node is available") -> None:
        super().__init__(reason)


class StorageUnavailable(DockerError):
    status = 503
