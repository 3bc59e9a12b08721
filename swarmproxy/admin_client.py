"""A small client of the admin API, for `swarmproxy node`, `schedule` and `status`: plain HTTP
over TCP or a unix socket, one request per connection."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

DEFAULT_ADMIN = "tcp://127.0.0.1:2376"
TIMEOUT = 30.0


class AdminError(Exception):
    """The admin API refused, or could not be reached."""


def refusal(status: int, answer: Any) -> AdminError:
    """The admin API's answer of `status` as an error: its message, when it gave one."""
    message = answer.get("message") if isinstance(answer, dict) else None
    return AdminError(message or f"the admin API answered {status}")


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
        status, answer = self.request(method, path, body)
        if status >= 400:
            raise refusal(status, answer)
        return answer

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The status and the JSON answer, whatever the status (health answers 503 with its
        verdict); AdminError when there is no JSON answer to be had."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = self._connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise AdminError(f"cannot reach the admin API at {self.address}: {e}") from None
        finally:
            connection.close()
        try:
            return response.status, json.loads(payload) if payload else None
        except ValueError:
            raise AdminError(
                f"{self.address} answered {response.status} without JSON: is it the admin API?"
            ) from None
