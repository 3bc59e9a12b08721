"""docs/compatibility.md against the Engine API v1.41 spec, the routing table and the tests
(the check lives in scripts/compat_table.py), and the proxy's answers against the table:
every unsupported endpoint answers the daemon's 404 for an unknown path, every routed one
reaches its route. Fast: no node, the application served in process."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from swarmproxy.api.app import make_app
from swarmproxy.cluster import Cluster
from swarmproxy.config import from_dict
from swarmproxy.scheduler import make_scheduler
from swarmproxy.storage import MemoryStorage

pytest.importorskip("yaml")


def _load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "scripts" / "compat_table.py"
    spec = importlib.util.spec_from_file_location("compat_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compat = _load_script()
needs_spec = pytest.mark.skipif(
    not compat.SPEC.is_file(),
    reason=f"the Engine API spec is not at {compat.SPEC} (it lives in the workspace's shared/)",
)


def _unsupported() -> list[tuple[str, str]]:
    """The endpoints that ROUTES leaves out: of the spec, and those the doc lists beside it."""
    routed = compat.routes()
    endpoints = (
        [(o.method, o.path) for o in compat.spec_operations()] if compat.SPEC.is_file() else []
    )
    rows, _ = compat.parse_table(compat.TABLE.read_text())
    endpoints += [row.key for row in rows if row.key not in endpoints]
    return [key for key in endpoints if key not in routed]


def _concrete(path: str) -> str:
    """A path of the spec with its parameters filled in: an image name with a slash and a
    tag (the image routes must take them), a plain word elsewhere."""
    sample = "team/app:1" if path.startswith("/images/") else "sample1"
    return re.sub(r"\{\w+\}", sample, path)


@needs_spec
def test_the_table_lists_every_operation_as_routed_with_existing_tests() -> None:
    problems = compat.check_doc()
    assert not problems, "docs/compatibility.md:\n" + "\n".join(problems)


@needs_spec
def test_the_tables_are_what_the_refresh_prints() -> None:
    """In the spec's order, tag by tag: `python scripts/compat_table.py` gives them back
    unchanged, so a refresh after a change of the spec or ROUTES shows only that change."""
    text = compat.TABLE.read_text()
    kept, legend = compat.parse_table(text)
    operations = compat.spec_operations()
    printed = compat.render(
        operations, compat.routes(), kept, compat.vias(), compat.tag_order(operations), legend
    )
    tables = text[text.index(f"## {compat.LEGEND}\n") : text.index(f"## {compat.REASONS}\n")]
    assert tables.strip() == printed.strip()


def test_the_check_finds_what_is_wrong() -> None:
    """On a made-up spec and doc: nothing is missed, so a clean check means something."""
    via = compat.vias()[0]
    operations = [
        compat.Operation("GET", "/a", "A", "GetA"),
        compat.Operation("GET", "/b", "A", "GetB"),
        compat.Operation("GET", "/c", "A", "GetC"),
        compat.Operation("GET", "/d", "A", "GetD"),
    ]
    routed = {("GET", "/a"): via, ("GET", "/b"): via, ("POST", "/extra"): via}
    doc = "\n".join(
        [
            f"## {compat.LEGEND}",
            compat.LEGEND_HEAD,
            f"| {compat.label(via)} | something else |",
            "## A",
            compat.ROW_HEAD,
            "|---|---|---|---|",
            f"| `GET /a` | {compat.label(via)} | "
            "`tests/test_compatibility_table.py::test_the_check_finds_what_is_wrong` | |",
            "| `GET /b` | not supported | `tests/nope.py::test_x` | why |",
            f"| `GET /c` | {compat.label(via)} | "
            "`tests/test_compatibility_table.py::no_such_test` | |",
            "## B",
            compat.ROW_HEAD,
            "| `GET /a` | not supported | | |",
        ]
    )
    rows, legend = compat.parse_table(doc)
    problems = "\n".join(compat.check(operations, routed, rows, legend, compat.vias()))
    for expected in (
        "GET /b: routed",  # a route the doc calls unsupported
        "no file tests/nope.py",
        "GET /c: not in ROUTES",  # an unrouted endpoint the doc calls routed
        "has no test no_such_test",
        "GET /a: listed twice",
        "missing: GET /d",
        "missing: POST /extra",  # a route outside the spec, not in the doc
        f"`{compat.label(via)}` must read",
        f"`{compat.UNSUPPORTED}` is not explained",
    ):
        assert expected in problems, (expected, problems)
    rows, _ = compat.parse_table(
        "## B\n| `GET /d` | not supported | `tests/nope.py::t[1]` | — |\n## A\n| `GET /e` | x | |"
    )
    problems = "\n".join(compat.check(operations, routed, rows, {}, []))
    assert "under ## B, the spec tags it A" in problems
    assert "GET /d: not supported, and the notes do not say why" in problems
    assert "GET /e: not in the spec" in problems
    assert "GET /e: names no test" in problems


@pytest.fixture
async def client(aiohttp_client: Any) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The proxy's own application, over a cluster of no nodes: what it answers without
    asking any."""
    cluster = Cluster([], MemoryStorage(), make_scheduler("round-robin"))
    try:
        yield await aiohttp_client(make_app(cluster, from_dict({})))
    finally:
        await cluster.close()


@pytest.mark.parametrize(("method", "path"), _unsupported())
async def test_unsupported_endpoints_answer_page_not_found(
    client: TestClient[web.Request, web.Application], method: str, path: str
) -> None:
    for prefix in ("", "/v1.41"):
        answer = await client.request(method, prefix + _concrete(path), json={})
        assert answer.status == 404, (method, prefix + path)
        assert await answer.json() == {"message": "page not found"}
        assert answer.headers["X-Swarmproxy-Error"] == "proxy"


@needs_spec
async def test_routed_endpoints_resolve_to_their_route() -> None:
    """Each operation of the spec that ROUTES routes reaches that very route, bare and
    under a version prefix."""
    cluster = Cluster([], MemoryStorage(), make_scheduler("round-robin"))
    app = make_app(cluster, from_dict({}))
    routed = compat.routes()
    try:
        for operation in compat.spec_operations():
            key = (operation.method, operation.path)
            if key not in routed:
                continue
            for prefix in ("", "/v1.41"):
                path = prefix + _concrete(operation.path)
                request = make_mocked_request(operation.method, path, app=app)
                match = await app.router.resolve(request)
                assert match.http_exception is None, (operation.method, path)
                resource = match.route.resource
                canonical = "" if resource is None else resource.canonical
                # A versioned route's canonical form is `/v{version}/…` (VERSION_PREFIX).
                assert (match.route.method, canonical.removeprefix("/v{version}")) == key, path
    finally:
        await cluster.close()
