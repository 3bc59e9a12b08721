"""The library's container and exec calls (the seed's), each sent to the node that holds
the container and keeping the index true; a node's refusal is raised as its DockerError.

The HTTP front routes the same endpoints through `locate_container` and streams them
instead: these are for Python callers, who want answers, not byte streams to relay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from swarmproxy.cluster.container_lists import KeptQuery, label_filters
from swarmproxy.cluster.images import Params, node_path
from swarmproxy.cluster.listing import merge_containers
from swarmproxy.cluster.parts import ClusterParts
from swarmproxy.cluster.streams import chunks
from swarmproxy.errors import DockerError, node_message
from swarmproxy.node_client import TRANSPORT_ERRORS, decoded, operation_of

if TYPE_CHECKING:
    import aiohttp

    from swarmproxy.cluster.node import Node


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _options(**given: Any) -> list[tuple[str, str]]:
    """Query parameters from keyword arguments; None means the daemon's default."""
    return [
        (key, _flag(value) if isinstance(value, bool) else str(value))
        for key, value in given.items()
        if value is not None
    ]


class ContainerOperations(ClusterParts):
    """Mixed into Cluster, which resolves containers and execs and keeps the index."""

    # --- the one way a call reaches a container's node --------------------------------
    async def _call(
        self, node: Node, method: str, path: str, body: Any = None, params: Params = ()
    ) -> Any:
        """`method path` on `node`: its JSON answer (None when empty), or its refusal."""
        data = None if body is None else json.dumps(body).encode()
        headers = None if body is None else {"Content-Type": "application/json"}
        full = node_path("", path, params)
        status, payload = await node.client.read(method, full, headers=headers, data=data)
        answer = decoded(payload, status)
        if status >= 400:
            raise DockerError(node_message(answer, status), status)
        return answer

    async def _container_call(
        self, ref: str, method: str, action: str, body: Any = None, params: Params = ()
    ) -> Any:
        container_id, node = await self.route_container(ref)
        path = f"/containers/{container_id}{action}"
        if method == "GET":
            return await self._call(node, method, path, body, params)
        async with self.changing(node, container_id):
            answer = await self._call(node, method, path, body, params)
            await self.note_change(node, container_id)
            return answer

    # --- containers -------------------------------------------------------------------
    async def list_containers(
        self, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        """Every node's containers, newest first, each naming its node."""
        query = _options(all=all, filters=json.dumps(filters) if filters else None)
        path = node_path("", "/containers/json", query)
        labels = label_filters(json.dumps(filters) if filters else "")
        if labels is not None:
            kept = await self.list_kept(KeptQuery(all, labels), path)
            listed: list[dict[str, Any]] = json.loads(kept)
            return listed
        per_node = await self.fan_out_json("GET", path)
        return await merge_containers([(node, body or []) for node, body in per_node], None)

    async def inspect_container(self, ref: str) -> dict[str, Any]:
        container_id, node = await self.route_container(ref)
        inspected = await self._call(node, "GET", f"/containers/{container_id}/json")
        return {"Node": node.describe(), **inspected}

    async def start_container(self, ref: str) -> None:
        await self._container_call(ref, "POST", "/start")

    async def stop_container(self, ref: str, timeout: int | None = None) -> None:
        await self._container_call(ref, "POST", "/stop", params=_options(t=timeout))

    async def restart_container(self, ref: str, timeout: int | None = None) -> None:
        await self._container_call(ref, "POST", "/restart", params=_options(t=timeout))

    async def kill_container(self, ref: str, signal: str | None = None) -> None:
        await self._container_call(ref, "POST", "/kill", params=_options(signal=signal))

    async def pause_container(self, ref: str) -> None:
        await self._container_call(ref, "POST", "/pause")

    async def unpause_container(self, ref: str) -> None:
        await self._container_call(ref, "POST", "/unpause")

    async def wait_container(self, ref: str, condition: str | None = None) -> dict[str, Any]:
        """Until the container stops (or `condition`): its `StatusCode`."""
        answer: dict[str, Any] = await self._container_call(
            ref, "POST", "/wait", params=_options(condition=condition)
        )
        return answer

    async def top_container(self, ref: str, ps_args: str | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = await self._container_call(
            ref, "GET", "/top", params=_options(ps_args=ps_args)
        )
        return answer

    async def remove_container(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        container_id, node = await self.route_container(ref)
        async with self.changing(node, container_id):
            await self._remove(node, container_id, force, volumes)
            await self.note_change(node, container_id)

    async def _remove(self, node: Node, container_id: str, force: bool, volumes: bool) -> None:
        try:
            await self._call(
                node,
                "DELETE",
                f"/containers/{container_id}",
                params=_options(force=force, v=volumes),
            )
        except DockerError as e:
            if e.status != 404:
                raise
            # Gone already: the index must not keep it either.
            await self.forget_container(container_id)
            raise
        await self.forget_container(container_id)

    async def remove_containers(self, refs: Sequence[str], force: bool = False) -> None:
        """Each in turn; the first failure stops (the seed's RemoveContainers)."""
        for ref in refs:
            await self.remove_container(ref, force=force)

    def container_logs(
        self,
        ref: str,
        *,
        follow: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: str | None = None,
        since: str | None = None,
    ) -> AsyncIterator[bytes]:
        """The daemon's log stream as it comes (multiplexed unless the container has a TTY)."""
        params = _options(
            follow=follow,
            stdout=stdout,
            stderr=stderr,
            timestamps=timestamps,
            tail=tail,
            since=since,
        )
        return self._container_stream(ref, "GET", "/logs", params)

    def export_container(self, ref: str) -> AsyncIterator[bytes]:
        """The container's filesystem as a tar stream."""
        return self._container_stream(ref, "GET", "/export")

    def get_archive(self, ref: str, path: str) -> AsyncIterator[bytes]:
        """A tar of `path` in the container."""
        return self._container_stream(ref, "GET", "/archive", _options(path=path))

    async def put_archive(
        self, ref: str, path: str, tar: bytes | AsyncIterable[bytes], **options: bool
    ) -> None:
        """Unpack `tar` at `path` in the container (`noOverwriteDirNonDir`, `copyUIDGID`)."""
        container_id, node = await self.route_container(ref)
        query = node_path("", f"/containers/{container_id}/archive", _options(path=path, **options))
        headers = {"Content-Type": "application/x-tar"}
        async with node.client.request("PUT", query, headers=headers, data=tar) as response:
            await _raise_refusal(node, response)

    async def _container_stream(
        self, ref: str, method: str, action: str, params: Params = ()
    ) -> AsyncIterator[bytes]:
        container_id, node = await self.route_container(ref)
        path = node_path("", f"/containers/{quote(container_id)}{action}", params)
        async with node.client.request(method, path) as response:
            await _raise_refusal(node, response)
            async for chunk in chunks(node, response):
                yield chunk

    # --- execs ------------------------------------------------------------------------
    async def create_exec(self, ref: str, config: Mapping[str, Any]) -> str:
        """An exec in the container (the Engine API's exec config); its ID, indexed."""
        container_id, node = await self.route_container(ref)
        answer = await self._call(node, "POST", f"/containers/{container_id}/exec", dict(config))
        exec_id = str(answer["Id"])
        await self.exec_created(exec_id, container_id)
        return exec_id

    async def start_exec(self, exec_id: str, detach: bool = False) -> bytes:
        """Run the exec; unless detached, its output (multiplexed unless it has a TTY), once
        it ends."""
        _, node = await self.locate_exec(exec_id)
        body = {"Detach": detach, "Tty": False}
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        path = f"/exec/{quote(exec_id)}/start"
        async with node.client.request("POST", path, headers=headers, data=data) as response:
            await _raise_refusal(node, response)
            return b"".join([chunk async for chunk in chunks(node, response)])

    async def inspect_exec(self, exec_id: str) -> dict[str, Any]:
        _, node = await self.locate_exec(exec_id)
        answer: dict[str, Any] = await self._call(node, "GET", f"/exec/{quote(exec_id)}/json")
        return answer


async def _raise_refusal(node: Node, response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        payload = await response.read()
    except TRANSPORT_ERRORS as e:
        raise node.client.unavailable(e, operation_of(response)) from e
    answer = decoded(payload, response.status)
    raise DockerError(node_message(answer, response.status), response.status)
