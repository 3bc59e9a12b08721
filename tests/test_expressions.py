"""swarmproxy.scheduler.expressions: classic Swarm's placement expressions, parsed, matched,
and taken out of a create body."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from swarmproxy.cluster.node import Node
from swarmproxy.errors import BadRequest
from swarmproxy.scheduler.expressions import (
    AFFINITIES_LABEL,
    CONSTRAINTS_LABEL,
    Expression,
    constraint_failure,
    extract_placement,
    parse_expression,
    parse_expressions,
    sift,
)


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    made = [
        Node("node-1", "tcp://10.0.0.1:2375", {"zone": "a", "disk": "ssd"}),
        Node("node-2", "tcp://10.0.0.2:2375", {"zone": "b", "disk": "ssd"}),
        Node("node-3", "tcp://10.0.0.3:2375", {"zone": "b"}),
    ]
    try:
        yield made
    finally:
        for node in made:
            await node.client.close()


def test_parse_hard_and_soft() -> None:
    """A `~` after the operator makes an expression soft; it is not part of the value."""
    assert parse_expression("zone==a") == Expression("zone", True, "a")
    assert parse_expression("zone==~a") == Expression("zone", True, "a", soft=True)
    assert parse_expression(" zone != ~ a ") == Expression("zone", False, "a", soft=True)
    assert parse_expression("container==~/^web-[0-9]+$/") == Expression(
        "container", True, "/^web-[0-9]+$/", soft=True
    )


def test_written_back_as_given() -> None:
    """str() gives the expression in its canonical form, for reasons and labels."""
    assert [str(e) for e in parse_expressions(["zone==~a", "node != n1", "x==/a|b/"])] == [
        "zone==~a",
        "node!=n1",
        "x==/a|b/",
    ]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("zone=a", "constraint", "invalid constraint 'zone=a': expected key==value"),
        ("zone==", "constraint", "expected key==value or key!=value"),
        ("zone==~", "constraint", "invalid constraint 'zone==~'"),
        ("zone==~ ", "affinity", "invalid affinity 'zone==~ '"),
        ("container==/(/", "affinity", "invalid affinity 'container==/\\(/': missing \\)"),
        ("==web", "affinity", "invalid affinity"),
        ("", "constraint", "invalid constraint ''"),
    ],
)
def test_invalid_is_a_bad_request_naming_its_kind(text: str, kind: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as raised:
        parse_expression(text, kind)
    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("text", "actual", "matched"),
    [
        ("k==Web", "web", True),  # literals: case-insensitive, whole value
        ("k==web", "web-1", False),
        ("k==web-*", "WEB-12", True),  # globs: whole value
        ("k==web-?", "web-12", False),
        ("k==web-[12]", "web-2", True),
        ("k==/EB-[0-9]/", "web-3", True),  # regex: searched for, case-insensitive
        ("k==/^eb/", "web", False),
        ("k==/", "/", True),  # a lone slash is a literal
        ("k==*", None, False),  # nothing matches a missing value
    ],
)
def test_matches(text: str, actual: str | None, matched: bool) -> None:
    assert parse_expression(text).matches(actual) is matched


def test_holds_applies_the_operator() -> None:
    """A missing value fails `==` and passes `!=`, whatever the value."""
    assert parse_expression("zone==a").holds("a")
    assert not parse_expression("zone!=a").holds("A")
    assert not parse_expression("zone==*").holds(None)
    assert parse_expression("zone!=*").holds(None)


def test_is_pattern() -> None:
    assert not parse_expression("image==redis:7").is_pattern
    assert parse_expression("image==redis:*").is_pattern
    assert parse_expression("image==/redis/").is_pattern
    assert parse_expression("container==web-[0-9]").is_pattern


async def test_constraint_failure_built_ins(nodes: list[Node]) -> None:
    """`node`, `storagedriver`, `kernelversion`, `operatingsystem` are read from the node
    itself; a built-in the daemon did not report is unknown."""
    node = nodes[0]
    node.info.update({"Driver": "overlay2", "KernelVersion": "6.1.0-18-amd64"})
    assert constraint_failure(node, parse_expression("node==node-1")) is None
    assert constraint_failure(node, parse_expression("storagedriver==overlay*")) is None
    assert constraint_failure(node, parse_expression("kernelversion==/^6\\./")) is None
    assert (
        constraint_failure(node, parse_expression("operatingsystem==debian*"))
        == "operatingsystem==debian*: unknown operatingsystem"
    )
    assert constraint_failure(node, parse_expression("rack==r1")) == "rack==r1: no label rack"
    assert constraint_failure(node, parse_expression("zone!=a")) == "zone!=a: zone is a"


async def test_sift_hard_and_soft(nodes: list[Node]) -> None:
    """Hard expressions first, then soft ones on what is left; a soft one that would leave
    nothing is dropped; each excluded node carries its first failure."""

    def sifted(*texts: str) -> dict[str, str]:
        excluded = sift(nodes, parse_expressions(texts), constraint_failure)
        return {node.name: reason for node, reason in excluded.items()}

    assert sifted("zone==b") == {"node-1": "zone==b: zone is a"}
    assert sifted("zone==b", "disk==ssd") == {
        "node-1": "zone==b: zone is a",
        "node-3": "disk==ssd: no label disk",
    }
    # Soft and satisfiable: it narrows.
    assert sifted("zone==~a") == {"node-2": "zone==~a: zone is b", "node-3": "zone==~a: zone is b"}
    # Soft and unsatisfiable: it yields.
    assert sifted("zone==~c") == {}
    # Written before the hard one, a soft one still cannot make the hard one fail.
    assert sifted("zone==~a", "zone==b") == {"node-1": "zone==b: zone is a"}
    # Each soft one is judged on what the ones before it left.
    assert sifted("zone==b", "disk==~ssd", "disk!=~ssd") == {
        "node-1": "zone==b: zone is a",
        "node-3": "disk==~ssd: no label disk",
    }
    # When hard ones exclude everything, there is nothing for a soft one to do.
    assert sifted("zone==c", "disk==~ssd") == {
        "node-1": "zone==c: zone is a",
        "node-2": "zone==c: zone is b",
        "node-3": "zone==c: zone is b",
    }


def test_extract_from_env() -> None:
    """`docker run -e constraint:zone==b -e affinity:container!=web` sends these in Env:
    they leave Env and land in the labels; every other entry stays, in order."""
    config = {
        "Image": "busybox",
        "Env": [
            "A=1",
            "constraint:zone==b",
            "reschedule:on-node-failure",
            "affinity:container!=~web",
            "constraint: disk==ssd ",
            "B=constraint:x==y",
            "constraint",
            "affinity=a:b",
        ],
    }
    sent, constraints, affinities = extract_placement(config)
    assert constraints == ["zone==b", "disk==ssd"]
    assert affinities == ["container!=~web"]
    assert sent == {
        "Image": "busybox",
        "Env": [
            "A=1",
            "reschedule:on-node-failure",
            "B=constraint:x==y",
            "constraint",
            "affinity=a:b",
        ],
        "Labels": {
            CONSTRAINTS_LABEL: '["zone==b","disk==ssd"]',
            AFFINITIES_LABEL: '["container!=~web"]',
        },
    }


def test_extract_from_labels_and_env_together() -> None:
    """Classic Swarm's labels (JSON arrays) and Env entries add up, each expression once;
    other labels stay."""
    config: dict[str, Any] = {
        "Env": ["constraint:zone==b", "affinity:image==redis"],
        "Labels": {
            "app": "shop",
            CONSTRAINTS_LABEL: json.dumps(["zone==b", "node!=node-3"]),
            AFFINITIES_LABEL: json.dumps(["container==db"]),
        },
    }
    sent, constraints, affinities = extract_placement(config)
    assert constraints == ["zone==b", "node!=node-3"]
    assert affinities == ["container==db", "image==redis"]
    assert sent["Env"] == []
    assert sent["Labels"] == {
        "app": "shop",
        CONSTRAINTS_LABEL: '["zone==b","node!=node-3"]',
        AFFINITIES_LABEL: '["container==db","image==redis"]',
    }


def test_extract_from_labels_only() -> None:
    config = {"Labels": {CONSTRAINTS_LABEL: '["zone==~a"]'}}
    sent, constraints, affinities = extract_placement(config)
    assert (constraints, affinities) == (["zone==~a"], [])
    assert sent == config
    assert AFFINITIES_LABEL not in sent["Labels"]


def test_extract_leaves_the_input_alone() -> None:
    config: dict[str, Any] = {
        "Env": ["constraint:zone==b", "A=1"],
        "Labels": {"app": "shop"},
        "HostConfig": {"Binds": ["data:/data"]},
    }
    before = copy.deepcopy(config)
    sent, _, _ = extract_placement(config)
    assert config == before
    assert sent is not config and sent["Labels"] is not config["Labels"]


@pytest.mark.parametrize(
    "config",
    [
        {"Image": "busybox"},
        {"Env": None, "Labels": None},
        {"Env": ["A=1", 7], "Labels": {"app": "x", CONSTRAINTS_LABEL: ""}},
    ],
)
def test_extract_without_expressions(config: dict[str, Any]) -> None:
    """Nothing to place by: the body goes on as it came."""
    assert extract_placement(config) == (config, [], [])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"Env": ["constraint:zone=b"]}, "invalid constraint 'zone=b'"),
        ({"Env": ["affinity:"]}, "invalid affinity ''"),
        ({"Labels": {CONSTRAINTS_LABEL: "zone==b"}}, "com.docker.swarm.constraints: expected"),
        ({"Labels": {AFFINITIES_LABEL: '{"a": 1}'}}, "com.docker.swarm.affinities: expected"),
        ({"Labels": {AFFINITIES_LABEL: "[1]"}}, "a JSON array of strings"),
        ({"Labels": {AFFINITIES_LABEL: '["image==/[/"]'}}, "invalid affinity 'image==/\\[/'"),
        ({"Labels": ["a=b"]}, "Labels must be an object"),
        ({"Env": "A=1"}, "Env must be an array"),
    ],
)
def test_extract_refuses_invalid_input(config: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        extract_placement(config)
