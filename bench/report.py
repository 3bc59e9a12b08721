"""Result rows, their targets, and the report written from them (markdown and JSON)."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Row:
    """One line of the results table.

    The fields are exactly the keys of the dicts that bench/scale.py's `measure_scale`
    returns, so that `Row(**d)` takes them as they are. `direct` is the baseline (a node
    reached directly, or whatever the row's note names); `proxy` is None only for a row that
    was skipped, with the reason in `note`.
    """

    row: str
    metric: str
    direct: float | None
    proxy: float | None
    unit: str
    target: str
    met: bool | None
    note: str

    @property
    def ratio(self) -> float | None:
        if self.direct is None or self.proxy is None or self.direct == 0:
            return None
        return self.proxy / self.direct


@dataclass(frozen=True)
class Target:
    """A goal for a row: on the ratio proxy/direct (`on_ratio`), or on the proxy's own value."""

    limit: float
    at_most: bool
    on_ratio: bool = True

    def describe(self, unit: str = "") -> str:
        sign = "≤" if self.at_most else "≥"
        if self.on_ratio:
            return f"{sign} {self.limit:g}x"
        return f"{sign} {self.limit:g} {unit}".rstrip()

    def check(self, direct: float | None, proxy: float | None) -> bool | None:
        if proxy is None:
            return None
        if self.on_ratio:
            if direct is None or direct == 0:
                return None
            value = proxy / direct
        else:
            value = proxy
        return value <= self.limit if self.at_most else value >= self.limit


def ratio_at_most(limit: float) -> Target:
    return Target(limit, at_most=True)


def ratio_at_least(limit: float) -> Target:
    return Target(limit, at_most=False)


def value_at_most(limit: float) -> Target:
    return Target(limit, at_most=True, on_ratio=False)


def make_row(
    row: str,
    metric: str,
    direct: float | None,
    proxy: float | None,
    unit: str,
    target: Target | None = None,
    note: str = "",
) -> Row:
    return Row(
        row=row,
        metric=metric,
        direct=direct,
        proxy=proxy,
        unit=unit,
        target=target.describe(unit) if target else "",
        met=target.check(direct, proxy) if target else None,
        note=note,
    )


def skipped_row(row: str, reason: str) -> Row:
    return Row(
        row=row,
        metric="skipped",
        direct=None,
        proxy=None,
        unit="",
        target="",
        met=None,
        note=f"skipped: {reason}",
    )


# -- the machine --------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _swarmproxy_commit() -> str:
    root = pathlib.Path(__file__).resolve().parent.parent
    result = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def machine_info(daemon_version: str) -> dict[str, str]:
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count() or 0),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "docker daemon": daemon_version,
        "swarmproxy": _swarmproxy_commit(),
    }


# -- output -------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _met(met: bool | None) -> str:
    if met is None:
        return "—"
    return "yes" if met else "**NO**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| row | metric | direct | proxy | ratio | target | met? |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        shown = r.unit and r.unit not in r.metric.split()
        metric = f"{r.metric} ({r.unit})" if shown else r.metric
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(
            f"| {_cell(r.row)} | {_cell(metric)} | {_number(r.direct)} | {_number(r.proxy)} "
            f"| {ratio} | {_cell(r.target) or '—'} | {_met(r.met)} |"
        )
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    # A note is one line of results.md: a note of several (a FAILED row's proxy log lines)
    # would leave lines that belong to no row, which a merge of two runs' notes then keeps.
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def markdown_notes(rows: list[Row]) -> str:
    notes = [
        f"- **{_cell(r.row)}** ({_cell(r.metric)}): {_one_line(r.note)}" for r in rows if r.note
    ]
    return "\n".join(notes) + "\n" if notes else ""


def markdown_report(rows: list[Row], machine: dict[str, str], preamble: list[str]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = ["# swarmproxy benchmark\n", f"- date: {now}"]
    parts += [f"- {key}: {value}" for key, value in machine.items()]
    parts += [f"- {line}" for line in preamble]
    parts += ["", markdown_table(rows)]
    notes = markdown_notes(rows)
    if notes:
        parts += ["## Notes\n", notes]
    return "\n".join(parts)


def write_report(
    out: pathlib.Path,
    rows: list[Row],
    machine: dict[str, str],
    preamble: list[str],
    details: dict[str, Any],
) -> str:
    """Writes results.md and results.json under `out`; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_report(rows, machine, preamble)
    (out / "results.md").write_text(text)
    payload = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "machine": machine,
        "preamble": preamble,
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "details": details,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    return text
