"""The daemon's timestamps (Go's RFC 3339 with nanoseconds) as seconds since the epoch."""

from __future__ import annotations

import re
from datetime import datetime

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch, keeping what Python's parser would drop: past microseconds,
    the nanoseconds that order two images made in the same second."""
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    seconds = datetime.fromisoformat(whole + zone).timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)
