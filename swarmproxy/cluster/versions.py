"""Docker API version arithmetic: the cluster speaks what every ready node speaks."""

from __future__ import annotations

from collections.abc import Iterable

# What the proxy reports before any node has answered, and the oldest it accepts then.
FALLBACK_API_VERSION = "1.41"
FALLBACK_MIN_API_VERSION = "1.12"


def parse(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def lowest(versions: Iterable[str], default: str) -> str:
    known = [v for v in versions if v]
    return min(known, key=parse) if known else default


def highest(versions: Iterable[str], default: str) -> str:
    known = [v for v in versions if v]
    return max(known, key=parse) if known else default


def check_request_version(requested: str, maximum: str, minimum: str) -> tuple[str, str]:
    """The daemon's complaints about a client's version: (too new, too old); empty if fine."""
    # The daemon checks the lower bound first.
    if parse(requested) < parse(minimum):
        return (
            "",
            f"client version {requested} is too old. Minimum supported API version is "
            f"{minimum}, please upgrade your client to a newer version",
        )
    if parse(requested) > parse(maximum):
        return (
            f"client version {requested} is too new. Maximum supported API version is {maximum}",
            "",
        )
    return "", ""
