"""User code named in the config by import path: `"package.module:name"`."""

from __future__ import annotations

import importlib
from typing import Any


def load(spec: str, what: str, form: str) -> Any:
    """The object `spec` names. A ValueError naming `what` (a hook, a healer, a strategy)
    when `spec` is not of the `form` `package.module:name`, or cannot be loaded."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} {spec!r} is not {form}")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"{what} {spec!r} cannot be loaded: {e}") from None
