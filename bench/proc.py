"""What /proc says of a process and all its descendants (a proxy's workers, a dockerd's
containerd): resident memory and CPU time."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the parenthesised command name (which may hold
    spaces): state, ppid, ... ; field n of `man proc` is index n - 3."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree(pid: int) -> Iterator[int]:
    """`pid` and its descendants alive now."""
    children = _children()
    pending = [pid]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(children.get(current, []))


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` and its descendants, in MiB."""
    total_kib = 0
    for member in tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
                        break
        except OSError:
            continue
    return total_kib / 1024


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of `pid` and its descendants alive now, in seconds."""
    ticks = 0
    for member in tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        # utime and stime are fields 14 and 15.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS


@dataclass
class CpuUse:
    """CPU used over a span, as shares of one core (1.0 = one core busy all along)."""

    client: float
    server: float | None


class CpuMeter:
    """Started before a measurement and stopped after it: how busy the measuring client and
    the measured server were, which tells a saturated server from a saturated client."""

    def __init__(self, client_pid: int, server_pid: int | None) -> None:
        self._client_pid = client_pid
        self._server_pid = server_pid
        self._started = time.monotonic()
        self._client = cpu_seconds(client_pid)
        self._server = cpu_seconds(server_pid) if server_pid is not None else 0.0

    def stop(self) -> CpuUse:
        wall = max(time.monotonic() - self._started, 1e-9)
        client = (cpu_seconds(self._client_pid) - self._client) / wall
        server = None
        if self._server_pid is not None:
            server = (cpu_seconds(self._server_pid) - self._server) / wall
        return CpuUse(client, server)


def describe_cpu(uses: list[CpuUse], server: str = "server") -> str:
    """Median shares over runs, for a note ("client 97%, dockerd 64%")."""
    if not uses:
        return ""
    client = statistics.median(u.client for u in uses)
    servers = [u.server for u in uses if u.server is not None]
    text = f"client {client:.0%}"
    if servers:
        text += f", {server} {statistics.median(servers):.0%}"
    return text
