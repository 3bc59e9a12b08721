"""A small client of the admin API, for `swarmproxy node`: plain HTTP over TCP or a unix
socket, one request per connection."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

DEFAULT_ADMIN = "tcp://127.0.0.1:2376"
TIMEOUT = 30.0


class AdminError(Exception):
    """The admin API refused, or could not be reached."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self._path)


class AdminClient:
    def __init__(self, address: str = DEFAULT_ADMIN, token: str = "") -> None:
        self.address = address
        self.token = token

    def _connection(self) -> http.client.HTTPConnection:
        if self.address.startswith("unix://"):
            return _UnixConnection(self.address[len("unix://") :])
        host, _, port = self.address.removeprefix("tcp://").rpartition(":")
        return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=TIMEOUT)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer; AdminError with the API's message on any refusal."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = self._connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as e:
            raise AdminError(f"cannot reach the admin API at {self.address}: {e}") from None
        finally:
            connection.close()
        answer = json.loads(payload) if payload else None
        if response.status >= 400:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise AdminError(message or f"the admin API answered {response.status}")
        return answer
