"""A container's `Status` in `GET /containers/json` ("Up 5 minutes (healthy)", "Exited (0)
2 hours ago"), rendered again at each listing from when the container started or finished,
as the daemon does: a list kept in process must not show the status of when it was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UP = re.compile(r"^Up [^(]+?(?P<suffix> \(.*\))?$")
_SINCE_FINISHED = re.compile(r"^(?P<prefix>(?:Restarting|Exited) \(-?\d+\) ).+ ago$")

STARTED, FINISHED = "started", "finished"


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration, the daemon's wording for how long ago."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    # Go's math.Round: halves away from zero (Python's round() goes to even).
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


@dataclass(frozen=True, slots=True)
class StatusText:
    """A status as the daemon wrote it, taken apart: the words around its duration, and
    which time the duration counts from (none for "Created", "Dead" and the like)."""

    prefix: str
    suffix: str = ""
    since: str = ""

    def render(self, started: float | None, finished: float | None, now: float) -> str | None:
        """The status at `now`; None when the time it counts from is not known."""
        if not self.since:
            return self.prefix
        moment = started if self.since == STARTED else finished
        if moment is None:
            return None
        return f"{self.prefix}{human_duration(now - moment)}{self.suffix}"


def parse_status(status: str) -> StatusText:
    up = _UP.match(status)
    if up is not None:
        return StatusText("Up ", up.group("suffix") or "", STARTED)
    ended = _SINCE_FINISHED.match(status)
    if ended is not None:
        return StatusText(ended.group("prefix"), " ago", FINISHED)
    return StatusText(status)
