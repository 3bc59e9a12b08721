"""Linux bridges for nodes that need a network of their own (published ports, user
networks): one each, on its own subnet, removed afterwards. Needs root."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def bridges(count: int) -> Iterator[list[str]]:
    # Interface names are at most 15 bytes; the pid keeps parallel runs apart.
    tag = os.getpid() % 10000
    made: list[str] = []
    try:
        for i in range(count):
            name = f"spb{tag}x{i}"
            _ip("link", "add", name, "type", "bridge")
            made.append(name)
            _ip("addr", "add", f"10.{200 + i}.{tag % 250}.1/24", "dev", name)
            _ip("link", "set", name, "up")
        yield made
    finally:
        for name in made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "delete", name)
