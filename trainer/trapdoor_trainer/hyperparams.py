"""Parameter tables: a method's hyper-parameters or an attack's params, each entry typed with its default.

A table is published as a JSON Schema (`table_schema`, in the catalog that `describe` prints) and
`resolve` validates through that very schema with `schema_check`: there is no other type or range
check. After the schema, `resolve` fills in the defaults, coerces (an integral 3.0 becomes 3 for
an int, 1 becomes 1.0 for a float) and runs the semantic checks of `Checked` entries (what JSON
Schema cannot say, e.g. a trigger image's pixel range or a `.npy` file).

Every job records the fully resolved set, so a default changed later never changes what an old
job meant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from . import schema_check

_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}


@dataclass(frozen=True)
class Param:
    default: Any
    kind: str  # "int" | "float" | "bool" | "str"
    doc: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Sequence[Any]] = None
    nullable: bool = False  # null means "derived from another setting" (documented in `doc`)
    required = False

    def schema(self) -> dict:
        """This parameter as a JSON Schema (the catalog's `...Schema` properties)."""
        kind = _JSON_TYPES[self.kind]
        out: dict = {"type": [kind, "null"] if self.nullable else kind}
        if self.choices is not None:
            out["enum"] = list(self.choices) + ([None] if self.nullable and None not in self.choices else [])
        for key in ("minimum", "maximum"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["default"] = self.default
        out["description"] = self.doc
        return out

    def finish(self, field: str, value: Any) -> Any:
        """A value the schema accepted, as the job records it: integral floats become ints, ints floats."""
        if value is None:
            return None
        if self.kind == "int":
            return int(value)
        if self.kind == "float":
            return float(value)
        return value

    def describe(self) -> dict:
        out: dict = {"default": self.default, "type": self.kind, "doc": self.doc}
        for key in ("minimum", "maximum"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.nullable:
            out["nullable"] = True
        return out


@dataclass(frozen=True)
class Checked:
    """A parameter whose value needs more than the schema: `structure` is the JSON Schema part
    (e.g. an array or a path), `check(field, value)` the semantic rest, run after the schema."""

    structure: dict
    check: Callable[[str, Any], Any]
    doc: str
    default: Any = None
    required: bool = False  # no default: the user must give it

    def schema(self) -> dict:
        out = dict(self.structure)
        if not self.required:
            out["default"] = self.default
        out["description"] = self.doc
        return out

    def finish(self, field: str, value: Any) -> Any:
        return self.check(field, value)


def table_schema(table: Mapping[str, Any]) -> dict:
    """The JSON Schema of the object a user passes for `table` (a dict of Param/Checked)."""
    schema: dict = {"type": "object", "additionalProperties": False, "properties": {k: p.schema() for k, p in table.items()}}
    required = [k for k, p in table.items() if p.required]
    if required:
        schema["required"] = required
    return schema_check.check_schema(schema)


def _json_view(given: Any) -> Any:
    """What the schema sees of in-process values: numpy arrays as nested lists, paths as strings."""
    if not isinstance(given, Mapping) or not any(isinstance(v, (np.ndarray, os.PathLike)) for v in given.values()):
        return given
    return {k: v.tolist() if isinstance(v, np.ndarray) else os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in given.items()}


def validate(
    table: Mapping[str, Any], given: Any, prefix: str = "hyperparameters", *, schema: Optional[dict] = None, unknown: str = "hyper-parameter"
) -> None:
    """Schema validation only: SpecError naming the first bad field of `given`.

    `schema` is the table's (pass the one built at registration; built here otherwise); `unknown`
    names what an unknown key is in the error.
    """
    schema_check.validate(_json_view(given), table_schema(table) if schema is None else schema, prefix, unknown=unknown)


def resolve(
    table: Mapping[str, Any], given: Any, prefix: str = "hyperparameters", *, schema: Optional[dict] = None, unknown: str = "hyper-parameter"
) -> dict:
    """`given` (None = nothing given) validated, merged over the defaults, coerced, semantically checked."""
    given = {} if given is None else given
    validate(table, given, prefix, schema=schema, unknown=unknown)
    return {name: p.finish(f"{prefix}.{name}", given.get(name, p.default)) for name, p in table.items()}


# Shared entries, so every method spells and documents them alike.
COMMON = {
    "lr": Param(1e-3, "float", "Adam learning rate (cosine-annealed over the epochs)", minimum=0, maximum=10),
    "weightDecay": Param(5e-4, "float", "Adam L2 weight decay", minimum=0, maximum=1),
    "batchSize": Param(256, "int", "training batch size", minimum=1, maximum=65536),
    "augment": Param(
        "crop-flip",
        "str",
        "batched augmentation: random crop (pad 4 on 32x32, scaled) + horizontal flip; turn flip off where mirroring changes meaning",
        choices=("crop-flip", "crop", "flip", "none"),
    ),
    "evalBatchSize": Param(1000, "int", "batch size for evaluation", minimum=1, maximum=65536),
}

# Post-training defenses (FP, NAD, I-BAU, ANP) build their backdoored starting point with these
# when the job gives no data.initModel: a NO_DEFENSE run with the COMMON settings.
PRETRAIN = {
    "pretrainEpochs": Param(200, "int", "epochs of the no-defense model trained first when data.initModel is not given", minimum=1, maximum=10000),
}
