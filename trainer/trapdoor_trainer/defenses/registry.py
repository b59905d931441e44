"""Defense registry: a method is a module in this package whose `run(ctx)` is decorated

    @METHODS.register("NAME", description=..., kind="training" | "post-training", hyperparameters=TABLE, order=N)
    def run(ctx: RunContext) -> dict: ...

The modules are imported on first use. The service lists methods (with their hyper-parameters,
defaults and the hyper-parameters' JSON Schema) from `describe_methods()`, and `MethodInfo.resolve`
validates a job's hyper-parameters through that same schema, so the two never drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .. import hyperparams
from ..registry import Registry

FIELD = "hyperparameters"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    kind: str  # "training" (from scratch on the poisoned set) | "post-training" (starts from a backdoored model) | "scan" (no model) | "evaluation" (measures a given model)
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
            "requiredInputs": {"scan": ["train", "holdout"], "evaluation": ["test", "initModel"]}.get(self.kind, ["train", "holdout", "test"]),
            "optionalInputs": {"post-training": ["asrTest", "initModel"], "scan": []}.get(self.kind, ["asrTest"]),
            "hyperparameters": {k: p.describe() for k, p in self.hyperparameters.items()},
            "hyperparametersSchema": self.schema,
        }


def _make(name: str, run: Callable, **info: Any) -> MethodInfo:
    return MethodInfo(name=name, run=run, **info)


METHODS: Registry[MethodInfo] = Registry("method", "method", _make, package=__package__)


def methods() -> dict:
    return {m.name: m for m in METHODS.entries()}


def get_method(name: str) -> MethodInfo:
    return METHODS.get(name)


def describe_methods() -> list[dict]:
    return [m.describe() for m in METHODS.entries()]
