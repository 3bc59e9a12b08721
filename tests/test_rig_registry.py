"""The in-memory registry rig, driven by a real dockerd: pull, push, and a stalled repository."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator
from http.client import HTTPResponse

import pytest

from swarmproxy.local_nodes import (
    IMAGE,
    DockerCommandError,
    DockerNode,
    busybox_image_tar,
    busybox_rootfs_tar,
    image_parts,
    start_nodes,
    stop_nodes,
)
from tests.rig.registry import Registry, sha256

needs_dockerd = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dockerd") is None,
    reason="needs root and dockerd",
)


@pytest.fixture(scope="module")
def node() -> Iterator[DockerNode]:
    started = start_nodes(1)
    try:
        yield started[0]
    finally:
        stop_nodes(started)


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start() as started:
        yield started


def _busybox_with(path: str, data: bytes) -> bytes:
    """The busybox root filesystem plus one file: a layer no node holds yet."""
    buf = io.BytesIO(busybox_rootfs_tar())
    with tarfile.open(fileobj=buf, mode="a") as tar:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _image_id(node: DockerNode, ref: str) -> str:
    return node.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


@needs_dockerd
@pytest.mark.timeout(300)
def test_pull_an_added_image_and_run_it(node: DockerNode, registry: Registry) -> None:
    parts = image_parts(_busybox_with("etc/greeting", b"hello from the registry\n"))
    digest = registry.add_image("team/app", "v1", parts)
    ref = f"{registry.address}/team/app:v1"

    node.docker("pull", ref)

    assert _image_id(node, ref) == parts.id
    repo_digests = node.docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref)
    assert json.loads(repo_digests.stdout) == [f"{registry.address}/team/app@{digest}"]
    run = node.docker("run", "--rm", ref, "cat", "/etc/greeting")
    assert run.stdout == "hello from the registry\n"
    node.docker("rmi", ref)


@needs_dockerd
@pytest.mark.timeout(300)
def test_pull_of_an_unknown_tag_fails(node: DockerNode, registry: Registry) -> None:
    with pytest.raises(DockerCommandError) as failed:
        node.docker("pull", f"{registry.address}/team/app:missing")
    assert "manifest unknown" in failed.value.stderr


@needs_dockerd
@pytest.mark.timeout(300)
def test_push_then_pull_back(node: DockerNode, registry: Registry) -> None:
    ref = f"{registry.address}/pushed:v2"
    busybox_id = _image_id(node, IMAGE)
    node.docker("tag", IMAGE, ref)
    try:
        pushed = node.docker("push", ref)
        assert list(registry.manifests("pushed")) == ["v2"]
        assert f"digest: {registry.manifests('pushed')['v2']}" in pushed.stdout
        assert any(r.startswith("PATCH /v2/pushed/blobs/uploads/") for r in registry.requests)

        # Without any local copy, the pull must fetch every blob dockerd pushed.
        node.docker("rmi", ref, IMAGE)
        node.docker("pull", ref)
        assert _image_id(node, ref) == busybox_id
        assert node.docker("run", "--rm", ref, "echo", "back").stdout == "back\n"
    finally:
        node.docker("rmi", ref, check=False)
        node.docker("load", input=busybox_image_tar(), timeout=120)


@needs_dockerd
@pytest.mark.timeout(300)
def test_stalled_repository_holds_the_pull_until_stop(node: DockerNode) -> None:
    registry = Registry.start()
    outcome: list[subprocess.CompletedProcess[str] | BaseException] = []

    def pull() -> None:
        try:
            outcome.append(node.docker("pull", f"{registry.address}/slow/app:v1", check=False))
        except BaseException as exc:
            outcome.append(exc)

    puller = threading.Thread(target=pull, name="stalled-pull")
    try:
        registry.stall("slow/app")
        puller.start()
        puller.join(3)
        assert puller.is_alive(), outcome
        assert any("/v2/slow/app/manifests/v1" in r for r in registry.requests)
    finally:
        t0 = time.monotonic()
        registry.stop()
        stopped_in = time.monotonic() - t0
    assert stopped_in < 2
    puller.join(30)
    assert not puller.is_alive()
    [result] = outcome
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode != 0
    assert "/v2/slow/app/manifests/v1" in result.stderr  # where it was stuck


def test_survives_a_tls_client_hello(registry: Registry) -> None:
    host, port = registry.address.split(":")
    context = ssl.create_default_context()
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        pytest.raises((ssl.SSLError, OSError)),
    ):
        context.wrap_socket(raw, server_hostname=host)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/v2/")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Docker-Distribution-API-Version") == "registry/2.0"
    assert response.read() == b"{}"
    conn.close()


def test_chunked_upload(registry: Registry) -> None:
    host, port = registry.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)

    def call(method: str, path: str, body: Iterable[bytes] | None = None) -> HTTPResponse:
        conn.request(method, path, body=body, encode_chunked=body is not None)
        response = conn.getresponse()
        response.read()
        return response

    started = call("POST", "/v2/team/app/blobs/uploads/")
    assert started.status == 202
    assert started.getheader("Range") == "0-0"
    location = started.getheader("Location") or ""
    patched = call("PATCH", location, iter([b"hello ", b"world"]))
    assert patched.status == 202
    assert patched.getheader("Range") == "0-10"
    wrong = call("PUT", location + "?digest=" + sha256(b"other"))
    assert wrong.status == 400

    started = call("POST", "/v2/team/app/blobs/uploads/")
    location = started.getheader("Location") or ""
    call("PATCH", location, iter([b"hello ", b"world"]))
    digest = sha256(b"hello world")
    done = call("PUT", location + "?digest=" + digest, iter([b""]))
    assert done.status == 201
    assert done.getheader("Docker-Content-Digest") == digest
    mounted = call("POST", f"/v2/other/blobs/uploads/?mount={digest}&from=team/app")
    assert mounted.status == 201
    conn.request("GET", f"/v2/other/blobs/{digest}")
    assert conn.getresponse().read() == b"hello world"
    conn.request("GET", "/v2/other/manifests/latest")
    unknown = conn.getresponse()
    assert unknown.status == 404
    assert json.loads(unknown.read())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    conn.close()
