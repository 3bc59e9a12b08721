"""A minimal in-memory Docker Registry (HTTP API V2), so tests can `docker pull` and `docker push`.

``Registry.start()`` serves plain HTTP on 127.0.0.1:PORT from a daemon thread.  dockerd treats
127.0.0.0/8 as an insecure registry: it tries HTTPS first and falls back to HTTP, so images are
addressed as ``f"{registry.address}/team/app:v1"`` without any daemon configuration.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import json
import logging
import re
import socket
import threading
import uuid
from urllib.parse import parse_qs, urlsplit

from swarmproxy.local_nodes import ImageParts

__all__ = ["CONFIG_V1", "LAYER_GZIP", "MANIFEST_V2", "Registry"]

log = logging.getLogger(__name__)

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<upload>[^/]*)$")
_OBJECT = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TLS_HANDSHAKE = b"\x16"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}
        # (repository, tag or digest) -> (media type, manifest bytes)
        self._manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._uploads: dict[str, bytearray] = {}
        self._stalled: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.requests: list[str] = []
        """Every request as ``"METHOD /path"``, in arrival order."""
        self.credentials: tuple[str, str] | None = None
        """When set, every request needs HTTP basic auth with this user and password."""
        self._server = _Server(self)
        # A short poll interval keeps stop() (which waits for the next poll) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"registry-{self.address}",
            daemon=True,
        )

    @classmethod
    def start(cls) -> Registry:
        registry = cls()
        registry._thread.start()
        log.info("registry listening on %s", registry.address)
        return registry

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving and drop every open connection, stalled ones included.  Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        # Handlers of idle keep-alive connections sit in readline(); this wakes them up.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()
        log.info("registry on %s stopped", self.address)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_image(self, repository: str, tag: str, parts: ImageParts) -> str:
        """Publish `parts` as ``repository:tag``; returns the manifest digest."""
        # A fixed mtime keeps the compressed layer, hence the manifest digest, reproducible.
        layer = gzip.compress(parts.layer, mtime=0)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "size": len(parts.config), "digest": parts.id},
            "layers": [{"mediaType": LAYER_GZIP, "size": len(layer), "digest": sha256(layer)}],
        }
        body = json.dumps(manifest, indent=3).encode()
        with self._lock:
            self._blobs[parts.id] = parts.config
            self._blobs[sha256(layer)] = layer
        return self._put_manifest(repository, tag, MANIFEST_V2, body)

    def manifests(self, repository: str) -> dict[str, str]:
        """The tags of `repository`, each with the digest of its manifest."""
        with self._lock:
            return {
                ref: sha256(body)
                for (repo, ref), (_, body) in self._manifests.items()
                if repo == repository and not ref.startswith("sha256:")
            }

    def stall(self, repository: str) -> None:
        """Manifest requests for `repository` get no answer, until stop()."""
        with self._lock:
            self._stalled.add(repository)

    def _put_manifest(self, repository: str, ref: str, media_type: str, body: bytes) -> str:
        digest = sha256(body)
        with self._lock:
            self._manifests[repository, ref] = (media_type, body)
            self._manifests[repository, digest] = (media_type, body)
        return digest


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gives up mid-transfer (a killed `docker pull`) is routine here.
        log.debug("registry: error serving %s", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 lets clients keep connections alive (dockerd does not: it sends
    # "Connection: close"), so every response needs a Content-Length.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.registry._lock:
            self.server.registry._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.registry._lock:
            self.server.registry._connections.discard(self.connection)
        super().finish()

    def handle(self) -> None:
        # dockerd tries HTTPS first: a ClientHello has no newline, so readline() would wait
        # for one until dockerd gives up.  Closing at once makes it fall back to HTTP.
        with contextlib.suppress(OSError):
            if self.connection.recv(1, socket.MSG_PEEK) == _TLS_HANDSHAKE:
                log.debug("registry: dropping TLS connection from %s", self.client_address)
                return
        if not self.server.registry._stopping.is_set():
            super().handle()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("registry: " + format, *args)

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = bytearray()
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline()  # the CRLF closing each chunk
        while self.rfile.readline().strip():  # trailers, up to the blank line
            pass
        return bytes(body)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _created(self, location: str, digest: str) -> None:
        self._send(201, headers={"Location": location, "Docker-Content-Digest": digest})

    def _error(self, status: int, code: str, message: str) -> None:
        errors = {"errors": [{"code": code, "message": message, "detail": self.path}]}
        self._send(status, json.dumps(errors).encode())

    def _dispatch(self) -> None:
        registry = self.server.registry
        registry.requests.append(f"{self.command} {self.path}")
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        if registry.credentials is not None and not self._authorized(registry.credentials):
            # The challenge makes dockerd retry with the X-Registry-Auth it was given.
            self._send(
                401,
                json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "log in"}]}).encode(),
                headers={"WWW-Authenticate": 'Basic realm="rig registry"'},
            )
        elif url.path in ("/v2", "/v2/") and self.command in ("GET", "HEAD"):
            self._send(200, b"{}")
        elif match := _UPLOAD.match(url.path):
            self._upload(match["name"], match["upload"], query, body)
        elif (match := _OBJECT.match(url.path)) and match["kind"] == "manifests":
            self._manifest(match["name"], match["ref"], body)
        elif match and self.command in ("GET", "HEAD"):
            with registry._lock:
                blob = registry._blobs.get(match["ref"])
            if blob is None:
                self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            else:
                headers = {"Docker-Content-Digest": match["ref"]}
                self._send(200, blob, "application/octet-stream", headers)
        else:
            self._error(404, "UNSUPPORTED", f"{self.command} {url.path} is not implemented")

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

    def _authorized(self, credentials: tuple[str, str]) -> bool:
        expected = base64.b64encode(":".join(credentials).encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _manifest(self, name: str, ref: str, body: bytes) -> None:
        registry = self.server.registry
        with registry._lock:
            stalled = name in registry._stalled
            found = registry._manifests.get((name, ref))
        if self.command == "PUT":
            with registry._lock:
                missing = [d for d in _referenced_blobs(body) if d not in registry._blobs]
            if missing:
                self._error(400, "MANIFEST_BLOB_UNKNOWN", f"blobs unknown: {missing}")
                return
            media_type = self.headers.get("Content-Type", MANIFEST_V2)
            digest = registry._put_manifest(name, ref, media_type, body)
            self._created(f"/v2/{name}/manifests/{digest}", digest)
        elif self.command not in ("GET", "HEAD"):
            self._error(405, "UNSUPPORTED", f"{self.command} on a manifest")
        elif stalled:
            log.info("registry: stalling %s %s", self.command, self.path)
            registry._stopping.wait()
            self.close_connection = True
        elif found is None:
            self._error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name}:{ref}")
        else:
            self._send(200, found[1], found[0], {"Docker-Content-Digest": sha256(found[1])})

    def _upload(self, name: str, upload: str, query: dict[str, str], body: bytes) -> None:
        registry = self.server.registry
        with registry._lock:
            mountable = query.get("mount", "") in registry._blobs
            if self.command == "POST" and not upload and not mountable:
                upload = str(uuid.uuid4())
                registry._uploads[upload] = bytearray()
            data = registry._uploads.get(upload)
            if data is not None:
                data += body
        if self.command == "POST" and mountable:
            self._created(f"/v2/{name}/blobs/{query['mount']}", query["mount"])
        elif data is None or self.command not in ("POST", "PATCH", "PUT"):
            self._error(404, "BLOB_UPLOAD_UNKNOWN", f"upload unknown: {upload}")
        elif "digest" in query and self.command in ("POST", "PUT"):
            # The final PUT, or a monolithic POST: the upload becomes a blob.
            digest = query["digest"]
            with registry._lock:
                registry._uploads.pop(upload, None)
            if sha256(bytes(data)) != digest:
                self._error(400, "DIGEST_INVALID", f"content does not match {digest}")
                return
            with registry._lock:
                registry._blobs[digest] = bytes(data)
            self._created(f"/v2/{name}/blobs/{digest}", digest)
        else:
            headers = {
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Docker-Upload-UUID": upload,
                "Range": f"0-{max(len(data) - 1, 0)}",
            }
            self._send(202, headers=headers)


def _referenced_blobs(manifest: bytes) -> list[str]:
    try:
        parsed = json.loads(manifest)
        return [parsed["config"]["digest"]] + [layer["digest"] for layer in parsed["layers"]]
    except (ValueError, KeyError, TypeError):
        # Not a schema2 image manifest (a manifest list, OCI index...): nothing to check.
        return []
