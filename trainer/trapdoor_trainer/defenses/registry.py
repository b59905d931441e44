"""Defense registry: every module in this package that defines `METHOD` (a MethodInfo) is a method.

Adding a defense = adding one module with `HYPERPARAMETERS`, `run(ctx)` and `METHOD`. The
service lists methods (with their hyper-parameters and defaults) from `describe_methods()`, so
the two never drift.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import SpecError


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    kind: str  # "training" (from scratch on the poisoned set) | "post-training" (starts from a backdoored model)
    hyperparameters: dict
    run: Callable
    order: int = 100  # position in listings


_METHODS: Optional[dict] = None


def methods() -> dict:
    global _METHODS
    if _METHODS is None:
        found = []
        for module_info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
            module = importlib.import_module(f"{__package__}.{module_info.name}")
            method = getattr(module, "METHOD", None)
            if isinstance(method, MethodInfo):
                found.append(method)
        _METHODS = {m.name: m for m in sorted(found, key=lambda m: (m.order, m.name))}
    return _METHODS


def get_method(name: str) -> MethodInfo:
    known = methods()
    if name not in known:
        raise SpecError("method", f"unknown method {name!r}; known: {sorted(known)}")
    return known[name]


def describe_methods() -> list[dict]:
    return [
        {
            "name": m.name,
            "description": m.description,
            "kind": m.kind,
            "requiredInputs": ["train", "holdout", "test"],
            "optionalInputs": ["asrTest", "initModel"] if m.kind == "post-training" else ["asrTest"],
            "hyperparameters": {k: p.describe() for k, p in m.hyperparameters.items()},
        }
        for m in methods().values()
    ]
