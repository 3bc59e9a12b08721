"""The container image's HEALTHCHECK: the proxy's own verdict, with the standard library only.

Asks `GET /swarmproxy/v1/health` on the admin listener (the only one that serves it) and
exits 0 on its 200 (storage answers and a node takes containers), 1 on anything else, as
Docker expects. The admin address is read from SWARMPROXY_ADMIN_LISTEN, which the image sets
and which wins over a mounted config file, so moving the listener moves the check with it.
The slim image has no curl, and the check must not depend on the package's own imports.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys

HEALTH = "/swarmproxy/v1/health"
DEFAULT_ADMIN = "tcp://127.0.0.1:2376"
# Below the HEALTHCHECK --timeout, so that a proxy that hangs is reported with a reason
# rather than the check being killed without one.
TIMEOUT = 4.0
# A wildcard listener is reached on loopback from inside the container.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def admin_addresses(text: str) -> list[str]:
    """The two spellings swarmproxy.config takes for a list: a JSON array, or commas."""
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(value, list):
                return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


def connection(address: str) -> http.client.HTTPConnection:
    if address.startswith("unix://"):
        return _UnixConnection(address.removeprefix("unix://"), TIMEOUT)
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    return http.client.HTTPConnection(_WILDCARDS.get(host, host), int(port), timeout=TIMEOUT)


def main() -> int:
    addresses = admin_addresses(os.environ.get("SWARMPROXY_ADMIN_LISTEN", DEFAULT_ADMIN))
    if not addresses:
        print("unhealthy: no admin listener (SWARMPROXY_ADMIN_LISTEN is empty)")
        return 1
    address = addresses[0]
    try:
        conn = connection(address)
    except ValueError as e:
        print(f"unhealthy: bad admin address {address!r}: {e}")
        return 1
    try:
        conn.request("GET", HEALTH)
        response = conn.getresponse()
        # Docker keeps the output in `docker inspect`: the verdict's JSON says why.
        body = response.read(4096).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as e:
        print(f"unhealthy: {address}{HEALTH}: {e}")
        return 1
    finally:
        conn.close()
    print(f"{response.status} {body}")
    return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
