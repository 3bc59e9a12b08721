"""The compatibility table, docs/compatibility.md: every operation of the Engine API v1.41
spec, how swarmproxy routes it (`swarmproxy.api.routes.ROUTES`) and the tests that exercise
it. The one place that reads the spec, the routing table and the doc, for this script and
for tests/test_compatibility_table.py alike.

    python scripts/compat_table.py           # the doc's tables, refreshed from spec + ROUTES
    python scripts/compat_table.py --check   # what the doc gets wrong; exit status 1 if any

The refresh keeps the tests and notes of the rows the doc has, and leaves `TODO` where a
row is new: paste its output over the tables, then fill them in.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Beside the repository, as in the project's workspace (tests/test_fuzz_api.py reads it too).
SPEC = REPO.parent / "shared" / "docker-engine-api" / "v1.41.yaml"
TABLE = REPO / "docs" / "compatibility.md"

UNSUPPORTED = "not supported"
LEGEND = "Routing"
# Endpoints that clients call though the v1.41 spec does not describe them.
OUTSIDE = "Outside the v1.41 spec"
# The prose after the tables: why each unsupported endpoint is.
REASONS = "Not supported, and why"
ROW_HEAD = "| endpoint | routed | tests | notes |"
LEGEND_HEAD = "| routed | where the request goes |"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")

_ENDPOINT = re.compile(r"`(" + "|".join(METHODS) + r") (/[^`]*)`")
_TEST = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]`]*\])?`")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_PATTERN = re.compile(r"\{(\w+):[^}]*\}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    tag: str
    operation_id: str


@dataclass(frozen=True)
class Row:
    section: str
    method: str
    path: str
    routed: str
    tests: tuple[str, ...]
    notes: str
    line: int

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


def endpoint(method: str, path: str) -> str:
    return f"{method} {path}"


# --- the spec ------------------------------------------------------------------------------


@functools.cache
def _document(spec: Path) -> Any:
    import yaml  # PyYAML: installed with schemathesis, the test extras' spec fuzzer

    # libyaml's loader when PyYAML has it: the pure-Python one takes seconds on the spec.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(spec.read_text(), Loader=loader)


def spec_operations(spec: Path = SPEC) -> list[Operation]:
    """Every (method, path) of the spec, in its order, with its first tag."""
    operations = []
    for path, item in _document(spec)["paths"].items():
        for method, operation in item.items():
            if method.upper() not in METHODS:
                continue  # `parameters` shared by the path's operations
            tags = operation.get("tags") or ["Untagged"]
            operations.append(
                Operation(method.upper(), path, tags[0], operation.get("operationId", ""))
            )
    return operations


def tag_order(operations: Iterable[Operation], spec: Path = SPEC) -> list[str]:
    """The spec's own list of tags first, then the tags only operations name (Session…)."""
    order = [t["name"] for t in _document(spec).get("tags", [])]
    for operation in operations:
        if operation.tag not in order:
            order.append(operation.tag)
    return order


# --- the routing table ---------------------------------------------------------------------


def label(via: Any) -> str:
    """How the doc names a `Via`: its name in words (CONTAINER_IN_BODY: container in body)."""
    return str(via.name).lower().replace("_", " ")


def _routing() -> Any:
    """swarmproxy.api.routes, from this repository even when swarmproxy is not installed."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from swarmproxy.api import routes

    return routes


def routes() -> dict[tuple[str, str], Any]:
    """ROUTES by (method, path), a path's patterns dropped (`{name:.+}` is `{name}`)."""
    return {(r.method, _PATTERN.sub(r"{\1}", r.path)): r.via for r in _routing().ROUTES}


def vias() -> list[Any]:
    """Every `Via`, in the order the routing table declares them."""
    return list(_routing().Via)


# --- the doc -------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip().strip("|"))]


def parse_table(text: str) -> tuple[list[Row], dict[str, str]]:
    """The doc's endpoint rows, and its legend (routed label: where the request goes)."""
    rows: list[Row] = []
    legend: dict[str, str] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = _cells(line)
        if section == LEGEND:
            if len(cells) == 2 and cells[0] != "routed":
                legend[cells[0]] = cells[1]
            continue
        found = _ENDPOINT.fullmatch(cells[0])
        if found is None:
            continue
        tests = tuple(
            f"{f}::{name}" for f, name in _TEST.findall(cells[2] if len(cells) > 2 else "")
        )
        rows.append(
            Row(
                section=section,
                method=found[1],
                path=found[2],
                routed=cells[1] if len(cells) > 1 else "",
                tests=tests,
                notes=cells[3] if len(cells) > 3 else "",
                line=number,
            )
        )
    return rows, legend


@functools.cache
def _functions(path: Path) -> frozenset[str]:
    """`name` and `Class::name` of every function a test file defines."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(names)


def missing_test(test: str, repo: Path = REPO) -> str | None:
    """Why `tests/x.py::name` names no test, or None when it does."""
    file, _, name = test.partition("::")
    path = repo / file
    if not path.is_file():
        return f"no file {file}"
    if name not in _functions(path):
        return f"{file} has no test {name}"
    return None


# --- the check -----------------------------------------------------------------------------


def check(
    operations: Sequence[Operation],
    routed: Mapping[tuple[str, str], Any],
    rows: Sequence[Row],
    legend: Mapping[str, str],
    all_vias: Sequence[Any],
    repo: Path = REPO,
) -> list[str]:
    """Everything the doc gets wrong, one line each: an operation of the spec it lacks, a
    route it calls unsupported (or an unrouted endpoint it calls routed), a routing that is
    not ROUTES', a test that does not exist, an unsupported endpoint without its reason."""
    problems: list[str] = []
    spec = {(o.method, o.path): o for o in operations}
    seen: dict[tuple[str, str], Row] = {}
    for row in rows:
        where = f"line {row.line}: {endpoint(*row.key)}"
        if row.key in seen:
            problems.append(f"{where}: listed twice (also line {seen[row.key].line})")
            continue
        seen[row.key] = row
        operation = spec.get(row.key)
        if operation is None and row.section != OUTSIDE:
            problems.append(f"{where}: not in the spec; list it under ## {OUTSIDE}")
        elif operation is not None and row.section != operation.tag:
            problems.append(f"{where}: under ## {row.section}, the spec tags it {operation.tag}")
        via = routed.get(row.key)
        expected = UNSUPPORTED if via is None else label(via)
        if row.routed != expected:
            if via is None:
                problems.append(f"{where}: not in ROUTES, so `{UNSUPPORTED}`, not `{row.routed}`")
            else:
                problems.append(f"{where}: routed {via.name} in ROUTES, so `{expected}`")
        if not row.tests:
            problems.append(f"{where}: names no test")
        for test in row.tests:
            why = missing_test(test, repo)
            if why is not None:
                problems.append(f"{where}: {why}")
        if via is None and not row.notes.strip(" —-"):
            problems.append(f"{where}: not supported, and the notes do not say why")
    for key, operation in spec.items():
        if key not in seen:
            problems.append(
                f"missing: {endpoint(*key)} ({operation.tag}, {operation.operation_id})"
            )
    for key, via in routed.items():
        if key not in seen and key not in spec:
            problems.append(f"missing: {endpoint(*key)}, routed {via.name}, not in the spec")
    for via in all_vias:
        if legend.get(label(via)) != via.value:
            problems.append(f"## {LEGEND}: `{label(via)}` must read `{via.value}` (Via.{via.name})")
    known = {label(v) for v in all_vias} | {UNSUPPORTED}
    problems.extend(f"## {LEGEND}: `{name}` is no Via" for name in legend if name not in known)
    if UNSUPPORTED not in legend:
        problems.append(f"## {LEGEND}: `{UNSUPPORTED}` is not explained")
    return problems


def check_doc(table: Path = TABLE, spec: Path = SPEC) -> list[str]:
    rows, legend = parse_table(table.read_text())
    return check(spec_operations(spec), routes(), rows, legend, vias())


# --- the refresh ---------------------------------------------------------------------------


def _row(key: tuple[str, str], routed: str, kept: Row | None) -> str:
    if kept is None:
        return f"| `{endpoint(*key)}` | {routed} | TODO | TODO |"
    tests = "<br>".join(f"`{t}`" for t in kept.tests) or "TODO"
    notes = f" {kept.notes} " if kept.notes else " "
    return f"| `{endpoint(*key)}` | {routed} | {tests} |{notes}|"


def render(
    operations: Sequence[Operation],
    routed: Mapping[tuple[str, str], Any],
    kept: Sequence[Row],
    all_vias: Sequence[Any],
    order: Sequence[str],
    legend: Mapping[str, str] | None = None,
) -> str:
    """The legend and one table per tag, rows in the spec's order, from spec + ROUTES; the
    tests and notes of the rows in `kept`, and what `legend` says of `not supported` (the
    doc as it is), carried over."""
    by_key = {row.key: row for row in kept}
    lines = [f"## {LEGEND}", "", LEGEND_HEAD, "|---|---|"]
    lines += [f"| {label(v)} | {v.value} |" for v in all_vias]
    lines.append(f"| {UNSUPPORTED} | {(legend or {}).get(UNSUPPORTED) or 'TODO'} |")
    outside = [row.key for row in kept if row.section == OUTSIDE]
    spec = {(o.method, o.path) for o in operations}
    outside += [key for key in routed if key not in spec and key not in outside]
    sections = [(tag, [(o.method, o.path) for o in operations if o.tag == tag]) for tag in order]
    for title, keys in [*sections, (OUTSIDE, outside)]:
        if not keys:
            continue
        lines += ["", f"## {title}", "", ROW_HEAD, "|---|---|---|---|"]
        for key in keys:
            via = routed.get(key)
            lines.append(_row(key, UNSUPPORTED if via is None else label(via), by_key.get(key)))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list what the doc gets wrong")
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--table", type=Path, default=TABLE)
    args = parser.parse_args(argv)
    if args.check:
        problems = check_doc(args.table, args.spec)
        for problem in problems:
            print(f"{args.table}: {problem}")
        return 1 if problems else 0
    operations = spec_operations(args.spec)
    kept, legend = parse_table(args.table.read_text()) if args.table.is_file() else ([], {})
    order = tag_order(operations, args.spec)
    sys.stdout.write(render(operations, routes(), kept, vias(), order, legend))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
