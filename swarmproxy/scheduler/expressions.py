"""Classic Swarm's placement expressions: parsed, matched, and taken out of a create body.

An expression is `key==value` or `key!=value`. The value is a literal, a glob (`*`, `?`,
`[...]`) or a `/regex/`, always matched case-insensitively as classic Swarm did. A value
written with a leading `~` (`zone==~a`) is soft: it yields when it would exclude every node.

Constraints judge the nodes themselves (the filters' `constraint`, and the
`X-Swarmproxy-Constraint` header of pulls, loads and imports); affinities judge what the
nodes hold (the filters' `affinity`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from swarmproxy.errors import BadRequest

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node

_EXPRESSION = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(.+?)\s*$")
_GLOB_CHARACTERS = frozenset("*?[")

CONSTRAINTS_LABEL = "com.docker.swarm.constraints"
AFFINITIES_LABEL = "com.docker.swarm.affinities"
# `docker run -e constraint:zone==b` puts `constraint:zone==b` in Env: by what comes before
# the colon, the label the expression is kept in.
_ENV_LABELS = {"constraint": CONSTRAINTS_LABEL, "affinity": AFFINITIES_LABEL}

# Constraint keys that are not node labels, and where a node's value is read from.
_BUILT_IN_KEYS: dict[str, Callable[[Node], Any]] = {
    "node": lambda node: node.name,
    "storagedriver": lambda node: node.info.get("Driver"),
    "kernelversion": lambda node: node.info.get("KernelVersion"),
    "operatingsystem": lambda node: node.info.get("OperatingSystem"),
}


def _regex_of(value: str) -> re.Pattern[str] | None:
    """A `/regex/` value compiled (re.error if it does not compile); None for any other."""
    if len(value) > 1 and value.startswith("/") and value.endswith("/"):
        return re.compile(value[1:-1], re.IGNORECASE)
    return None


@dataclass(frozen=True)
class Expression:
    key: str
    equal: bool
    # As written after the operator, without the `~` of a soft expression.
    value: str
    soft: bool = False

    @cached_property
    def regex(self) -> re.Pattern[str] | None:
        return _regex_of(self.value)

    @property
    def is_pattern(self) -> bool:
        """A regex or a glob: the value is not a plain name to look up."""
        return self.regex is not None or not _GLOB_CHARACTERS.isdisjoint(self.value)

    def matches(self, actual: str | None) -> bool:
        """Whether `actual` is what the value describes (whatever the operator): a regex is
        searched for in it, a glob or a literal must match it whole."""
        if actual is None:
            return False
        regex = self.regex
        if regex is not None:
            return regex.search(actual) is not None
        return fnmatch.fnmatchcase(actual.lower(), self.value.lower())

    def holds(self, actual: str | None) -> bool:
        """The operator applied: a missing value (None) fails `==` and passes `!=`."""
        return self.matches(actual) == self.equal

    def __str__(self) -> str:
        return f"{self.key}{'==' if self.equal else '!='}{'~' if self.soft else ''}{self.value}"


def parse_expression(text: str, kind: str = "constraint") -> Expression:
    """One expression; `kind` (constraint, affinity) names it in the BadRequest raised for
    anything that is not one."""
    match = _EXPRESSION.match(text)
    if not match:
        raise BadRequest(f"invalid {kind} {text!r}: expected key==value or key!=value")
    key, operator, value = match.groups()
    soft = value.startswith("~")
    if soft:
        value = value[1:].lstrip()
        if not value:
            raise BadRequest(f"invalid {kind} {text!r}: no value after ~")
    try:
        _regex_of(value)
    except re.error as e:
        raise BadRequest(f"invalid {kind} {text!r}: {e}") from None
    return Expression(key, operator == "==", value, soft)


def parse_expressions(texts: Iterable[str], kind: str = "constraint") -> list[Expression]:
    return [parse_expression(text, kind) for text in texts]


def parse_constraints(text: str) -> list[Expression]:
    """Comma-separated constraints (the `X-Swarmproxy-Constraint` header), all of which
    must hold."""
    return parse_expressions(part for part in text.split(",") if part.strip())


def node_value(node: Node, key: str) -> str | None:
    """What a constraint's key is on a node: a built-in (`node`, `storagedriver`,
    `kernelversion`, `operatingsystem`) or a label; None when the node has none."""
    read = _BUILT_IN_KEYS.get(key)
    value = read(node) if read is not None else node.labels.get(key)
    return None if value is None else str(value)


def constraint_failure(node: Node, expression: Expression) -> str | None:
    """Why the node fails the constraint (`zone==b: zone is a`), or None if it holds."""
    actual = node_value(node, expression.key)
    if expression.holds(actual):
        return None
    if actual is None:
        missing = "unknown" if expression.key in _BUILT_IN_KEYS else "no label"
        return f"{expression}: {missing} {expression.key}"
    return f"{expression}: {expression.key} is {actual}"


def sift(
    nodes: Sequence[Node],
    expressions: Sequence[Expression],
    failure: Callable[[Node, Expression], str | None],
) -> dict[Node, str]:
    """The nodes the expressions exclude, each with its first failure (`failure` says why a
    node fails one expression, or None).

    Hard expressions are applied first and soft ones after, in order, each on what is left:
    that way a soft one never narrows the field so far that a hard one empties it, and a
    soft one that would exclude every node still left is dropped."""
    excluded: dict[Node, str] = {}
    for node in nodes:
        for expression in expressions:
            reason = None if expression.soft else failure(node, expression)
            if reason is not None:
                excluded[node] = reason
                break
    for expression in expressions:
        if not expression.soft:
            continue
        left = [node for node in nodes if node not in excluded]
        failing = {node: failure(node, expression) for node in left}
        if all(reason is not None for reason in failing.values()):
            continue
        excluded.update({node: r for node, r in failing.items() if r is not None})
    return excluded


def matching(nodes: Sequence[Node], constraints: Sequence[Expression]) -> list[Node]:
    """The nodes that satisfy the constraints (soft ones yielding as `sift` says)."""
    excluded = sift(nodes, constraints, constraint_failure)
    return [node for node in nodes if node not in excluded]


def _label_list(labels: dict[str, Any], label: str) -> list[str]:
    """A label holding a JSON array of expressions, as classic Swarm wrote it."""
    text = labels.get(label)
    if not text:
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"invalid label {label}: expected a JSON array of strings, got {text!r}")
    return [item.strip() for item in value]


# The parts of a create body that the scheduler reads (placement, filters, load), and the
# JSON type each must have when given (null is as good as absent, as for the daemon).
_READ_PARTS: tuple[tuple[str, str, type, str], ...] = (
    ("", "Labels", dict, "an object"),
    ("", "Env", list, "an array"),
    ("", "HostConfig", dict, "an object"),
    ("HostConfig", "PortBindings", dict, "an object"),
    ("HostConfig", "Mounts", list, "an array"),
    ("HostConfig", "Binds", list, "an array"),
    ("HostConfig", "Links", list, "an array"),
    ("HostConfig", "VolumesFrom", list, "an array"),
)


def check_shape(config: dict[str, Any]) -> None:
    """A BadRequest for a create body whose parts the scheduler reads have the wrong JSON
    type: the daemon would refuse it too, after the proxy had judged every node by it."""
    for parent, key, kind, named in _READ_PARTS:
        value = (config.get(parent) or {}) if parent else config
        if value.get(key) is not None and not isinstance(value[key], kind):
            where = f"{parent}.{key}" if parent else key
            raise BadRequest(f"invalid create body: {where} must be {named}")
    host_config = config.get("HostConfig") or {}
    for port, bindings in (host_config.get("PortBindings") or {}).items():
        if not isinstance(bindings, list | None) or not all(
            isinstance(b, dict) for b in bindings or ()
        ):
            raise BadRequest(
                f"invalid create body: HostConfig.PortBindings[{port}] must be an array of objects"
            )
    if not all(isinstance(mount, dict) for mount in host_config.get("Mounts") or ()):
        raise BadRequest("invalid create body: HostConfig.Mounts must be an array of objects")


def extract_placement(config: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """A create body's constraints and affinities, and the body to send to the node.

    They are read from the labels `com.docker.swarm.constraints` / `.affinities` (JSON
    arrays) and from Env entries `constraint:EXPR` / `affinity:EXPR` (`docker run -e
    constraint:zone==b`). The body sent on has those Env entries removed (the container
    must not see them) and every expression kept in the two labels, so that `docker
    inspect` shows where it was asked to go. Each one is parsed: a BadRequest for an
    invalid one. `config` itself is left as it was."""
    check_shape(config)
    given_labels, env = config.get("Labels"), config.get("Env")
    labels: dict[str, Any] = dict(given_labels or {})
    found = {label: _label_list(labels, label) for label in _ENV_LABELS.values()}
    kept_env: list[Any] = []
    for entry in env or ():
        kind, colon, expression = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        label = _ENV_LABELS.get(kind) if colon else None
        if label is None:
            kept_env.append(entry)
        else:
            found[label].append(expression.strip())
    constraints = list(dict.fromkeys(found[CONSTRAINTS_LABEL]))
    affinities = list(dict.fromkeys(found[AFFINITIES_LABEL]))
    parse_expressions(constraints, "constraint")
    parse_expressions(affinities, "affinity")

    sent = dict(config)
    if env is not None:
        sent["Env"] = kept_env
    for label, expressions in ((CONSTRAINTS_LABEL, constraints), (AFFINITIES_LABEL, affinities)):
        if expressions:
            # Compact, as classic Swarm (Go) wrote them: `["zone==b"]`.
            labels[label] = json.dumps(expressions, separators=(",", ":"))
    if constraints or affinities:
        sent["Labels"] = labels
    return sent, constraints, affinities
