"""Defense registry: every module in this package that defines `METHOD` (a MethodInfo) is a method.

Adding a defense = adding one module with `HYPERPARAMETERS`, `run(ctx)` and `METHOD`. The
service lists methods (with their hyper-parameters, defaults and the hyper-parameters' JSON
Schema) from `describe_methods()`, and `MethodInfo.resolve` validates a job's hyper-parameters
through that same schema, so the two never drift.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import hyperparams
from ..errors import SpecError

FIELD = "hyperparameters"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    kind: str  # "training" (from scratch on the poisoned set) | "post-training" (starts from a backdoored model)
    hyperparameters: dict
    run: Callable
    order: int = 100  # position in listings
    schema: dict = field(init=False, repr=False, compare=False)  # JSON Schema of the hyperparameters object

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", hyperparams.table_schema(self.hyperparameters))

    def validate(self, given: Any) -> None:
        """Schema validation only (what the service checks too); SpecError names the field."""
        hyperparams.validate(self.hyperparameters, given, FIELD, schema=self.schema)

    def resolve(self, given: Any) -> dict:
        """The job's hyper-parameters: schema-validated, merged over the defaults, coerced."""
        return hyperparams.resolve(self.hyperparameters, given, FIELD, schema=self.schema)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "requiredInputs": ["train", "holdout", "test"],
            "optionalInputs": ["asrTest", "initModel"] if self.kind == "post-training" else ["asrTest"],
            "hyperparameters": {k: p.describe() for k, p in self.hyperparameters.items()},
            "hyperparametersSchema": self.schema,
        }


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
    return [m.describe() for m in methods().values()]
