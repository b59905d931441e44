"""Defense registry: each method is one module with HYPERPARAMETERS and run(ctx).

Adding a defense = adding a module and one entry here. The service lists methods (with their
hyper-parameters and defaults) from `describe_methods()`, so the two never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import SpecError
from . import none, tnr


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    kind: str  # "training" (from scratch on the poisoned set) | "post-training"
    hyperparameters: dict
    run: Callable


METHODS = {
    m.name: m
    for m in (
        MethodInfo("TRAP_AND_REPLACE", "Trap and Replace: trap the backdoor in a small head with a reconstruction-regularised stem, then replace the head using the clean holdout", "training", tnr.HYPERPARAMETERS, tnr.run),
        MethodInfo("NO_DEFENSE", "Ordinary training on the training set plus holdout (the reference every defense is compared with)", "training", none.HYPERPARAMETERS, none.run),
    )
}


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise SpecError("method", f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def describe_methods() -> list[dict]:
    return [
        {
            "name": m.name,
            "description": m.description,
            "kind": m.kind,
            "requiredInputs": ["train", "holdout", "test"],
            "hyperparameters": {k: p.describe() for k, p in m.hyperparameters.items()},
        }
        for m in METHODS.values()
    ]
