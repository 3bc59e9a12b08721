"""Errors with the Docker daemon's status codes, raised by the cluster core and the HTTP front.

The HTTP front turns each into the daemon's error body, `{"message": ...}`.
"""

from __future__ import annotations


class DockerError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(DockerError):
    status = 400


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

    def __init__(self, node_name: str, address: str, reason: str) -> None:
        super().__init__(f"node {node_name} ({address}) is unavailable: {reason}")
        self.node_name = node_name


class NoNodeAvailable(DockerError):
    status = 503

    def __init__(self, reason: str = "no healthy node is available") -> None:
        super().__init__(reason)


class StorageUnavailable(DockerError):
    status = 503
