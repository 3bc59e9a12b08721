"""Classic Swarm's node constraints (swarmproxy.scheduler.expressions), as the
`X-Swarmproxy-Constraint` header gives them: parsed, and matched against nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from swarmproxy.cluster.node import Node
from swarmproxy.errors import BadRequest
from swarmproxy.scheduler.expressions import (
    Expression,
    constraint_failure,
    matching,
    parse_constraints,
)


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    made = [
        Node("node-1", "tcp://10.0.0.1:2375", {"region": "eu-west", "storage": "ssd"}),
        Node("node-2", "tcp://10.0.0.2:2375", {"region": "us-east", "storage": "hdd"}),
        Node("gpu-box", "tcp://10.0.0.3:2375", {"region": "eu-north", "com.example.gpu": "a100"}),
    ]
    try:
        yield made
    finally:
        for node in made:
            await node.client.close()


def names(nodes: list[Node], text: str) -> list[str]:
    return [n.name for n in matching(nodes, parse_constraints(text))]


def test_parse_one_and_several() -> None:
    """`==` and `!=`, comma-separated, spaces around the parts ignored."""
    assert parse_constraints("node==node-1") == [Expression("node", True, "node-1")]
    assert parse_constraints(" region != eu-* , storage==ssd ,") == [
        Expression("region", False, "eu-*"),
        Expression("storage", True, "ssd"),
    ]
    assert parse_constraints("") == []
    assert parse_constraints(" , ") == []


def test_parse_keeps_dotted_and_slashed_keys_and_regex_values() -> None:
    """Label keys with dots and slashes; a `/regex/` value is kept as written."""
    assert parse_constraints("com.example/rack==/r[0-9]+/") == [
        Expression("com.example/rack", True, "/r[0-9]+/")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "node=node-1",
        "node",
        "==node-1",
        "node==",
        "node!=",
        "no de==x",
        "node<>x",
        "region==/[unclosed/",
        "region!=/(/",
    ],
)
def test_invalid_syntax_is_a_bad_request(text: str) -> None:
    """Anything not `key==value` / `key!=value`, or a regex that does not compile: the
    daemon's 400."""
    with pytest.raises(BadRequest, match="invalid constraint") as raised:
        parse_constraints(text)
    assert raised.value.status == 400


async def test_node_name(nodes: list[Node]) -> None:
    """`node==` is the node's configured name; `!=` every other one."""
    assert names(nodes, "node==node-2") == ["node-2"]
    assert names(nodes, "node!=node-2") == ["node-1", "gpu-box"]
    assert names(nodes, "node==nowhere") == []


async def test_labels(nodes: list[Node]) -> None:
    """Any other key is a node label; all constraints must hold."""
    assert names(nodes, "storage==ssd") == ["node-1"]
    assert names(nodes, "com.example.gpu==a100") == ["gpu-box"]
    assert names(nodes, "region==eu-west,storage==ssd") == ["node-1"]
    assert names(nodes, "region==eu-west,storage==hdd") == []


async def test_missing_label(nodes: list[Node]) -> None:
    """A node without the label never equals a value, and so always differs from it."""
    assert names(nodes, "storage==*") == ["node-1", "node-2"]
    assert names(nodes, "storage!=ssd") == ["node-2", "gpu-box"]
    assert names(nodes, "rack!=r1") == ["node-1", "node-2", "gpu-box"]


async def test_globs(nodes: list[Node]) -> None:
    """Glob values match the whole value, case-insensitively."""
    assert names(nodes, "region==eu-*") == ["node-1", "gpu-box"]
    assert names(nodes, "region!=eu-*") == ["node-2"]
    assert names(nodes, "node==node-?") == ["node-1", "node-2"]
    assert names(nodes, "node==NODE-1") == ["node-1"]
    assert names(nodes, "region==eu") == []
    assert names(nodes, "storage==[sh]dd") == ["node-2"]


async def test_regex(nodes: list[Node]) -> None:
    """A `/regex/` value is searched for in the value (anchor it to match it whole)."""
    assert names(nodes, "node==/^node-[0-9]+$/") == ["node-1", "node-2"]
    assert names(nodes, "node==/box/") == ["gpu-box"]
    assert names(nodes, "region!=/^eu-/") == ["node-2"]
    assert names(nodes, "region==/north|east/") == ["node-2", "gpu-box"]


async def test_a_lone_slash_is_a_plain_value(nodes: list[Node]) -> None:
    """`/` alone is no regex, just a value no node has."""
    assert parse_constraints("region==/") == [Expression("region", True, "/")]
    assert names(nodes, "region==/") == []


async def test_failure_on_one_node(nodes: list[Node]) -> None:
    """constraint_failure says of one node why it fails a constraint, None if it holds."""
    [constraint] = parse_constraints("region==us-*")
    assert [constraint_failure(n, constraint) for n in nodes] == [
        "region==us-*: region is eu-west",
        None,
        "region==us-*: region is eu-north",
    ]


async def test_soft_constraints_in_the_header(nodes: list[Node]) -> None:
    """A soft constraint narrows the nodes when some satisfy it, and yields otherwise."""
    assert names(nodes, "storage==~ssd") == ["node-1"]
    assert names(nodes, "storage==~nvme") == ["node-1", "node-2", "gpu-box"]
    assert names(nodes, "region==eu-*,storage==~hdd") == ["node-1", "gpu-box"]
