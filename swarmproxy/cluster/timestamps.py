"""The daemon's timestamps (Go's RFC 3339 with nanoseconds) as seconds since the epoch."""

from __future__ import annotations

import re
from datetime import datetime

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _parts(text: str) -> tuple[int, str]:
    """Whole seconds since the epoch, and the fractional digits as written."""
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    return int(datetime.fromisoformat(whole + zone).timestamp()), fraction or ""


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch, keeping what Python's parser would drop: past microseconds,
    the nanoseconds that order two images made in the same second."""
    seconds, fraction = _parts(text)
    return seconds + (float("0." + fraction) if fraction else 0.0)


def parse_nanoseconds(text: str) -> int:
    """Nanoseconds since the epoch, exactly: the daemon sorts containers by them."""
    seconds, fraction = _parts(text)
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])
