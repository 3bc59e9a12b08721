"""Hooks: code of the user's that the cluster runs before it acts (the seed's hooks).

- `before_container_create(node, request)`: raising makes the cluster try another node;
- `before_node_register(record)`: may change the node's record (its name, its labels)
  before it is stored, or raise to refuse the registration;
- `before_node_unregister(record)`: raising refuses the unregistration.

A hook is a function, plain or async, added with `cluster.add_hook(event, fn)` or named in
the config (`[hooks] before_container_create = ["package.module:function"]`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from swarmproxy import imports
from swarmproxy.errors import Conflict

EVENTS = ("before_container_create", "before_node_register", "before_node_unregister")

Hook = Callable[..., Any]


class HookRefused(Conflict):
    def __init__(self, hook: Hook, error: BaseException) -> None:
        name = getattr(hook, "__qualname__", repr(hook))
        super().__init__(f"refused by hook {name}: {error or type(error).__name__}")


def load_hook(spec: str) -> Hook:
    """`package.module:function`."""
    hook = imports.load(spec, "hook", "package.module:function")
    if not callable(hook):
        raise ValueError(f"hook {spec!r} is not callable")
    return hook  # type: ignore[no-any-return]


class Hooks:
    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {event: [] for event in EVENTS}

    def add(self, event: str, hook: Hook) -> None:
        if event not in self._hooks:
            raise ValueError(f"unknown hook event {event!r} (known: {', '.join(EVENTS)})")
        self._hooks[event].append(hook)

    async def run(self, event: str, *args: Any) -> None:
        """Every hook of `event`, in the order added; the first that raises refuses."""
        for hook in self._hooks[event]:
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:
                raise HookRefused(hook, e) from e
