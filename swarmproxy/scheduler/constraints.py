"""Node constraints in classic Swarm's syntax: `node==name`, `key!=value`, globs and
`/regex/` values. Where a call (a pull, a load, an import) is sent to some nodes only."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swarmproxy.cluster.node import Node

_EXPRESSION = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(.+?)\s*$")


class ConstraintError(ValueError):
    pass


@dataclass(frozen=True)
class Constraint:
    key: str
    equal: bool
    value: str

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _EXPRESSION.match(text)
        if not match:
            raise ConstraintError(f"invalid constraint {text!r}: expected key==value or key!=value")
        key, operator, value = match.groups()
        if value.startswith("/") and value.endswith("/") and len(value) > 1:
            try:
                re.compile(value[1:-1])
            except re.error as e:
                raise ConstraintError(f"invalid constraint {text!r}: {e}") from None
        return cls(key, operator == "==", value)

    def _matches_value(self, actual: str | None) -> bool:
        if actual is None:
            return False
        if self.value.startswith("/") and self.value.endswith("/") and len(self.value) > 1:
            return re.search(self.value[1:-1], actual) is not None
        return fnmatch.fnmatchcase(actual.lower(), self.value.lower())

    def matches(self, node: Node) -> bool:
        actual = node.name if self.key == "node" else node.labels.get(self.key)
        return self._matches_value(actual) == self.equal


def parse_constraints(text: str) -> list[Constraint]:
    """Comma-separated constraints, all of which must hold."""
    return [Constraint.parse(part) for part in text.split(",") if part.strip()]


def matching(nodes: Sequence[Node], constraints: Sequence[Constraint]) -> list[Node]:
    return [n for n in nodes if all(c.matches(n) for c in constraints)]
