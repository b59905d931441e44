"""Hyper-parameter tables: one per method, each entry a typed parameter with its default.

Every job records the fully resolved set, so a default changed later never changes what an old
job meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .errors import SpecError


@dataclass(frozen=True)
class Param:
    default: Any
    kind: str  # "int" | "float" | "bool" | "str"
    doc: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Sequence[Any]] = None
    nullable: bool = False  # null means "derived from another setting" (documented in `doc`)

    def check(self, field: str, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise SpecError(field, "must not be null")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SpecError(field, f"must be true or false, got {value!r}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
                raise SpecError(field, f"must be an integer, got {value!r}")
            value = int(value)
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(field, f"must be a number, got {value!r}")
            value = float(value)
        elif self.kind == "str":
            if not isinstance(value, str):
                raise SpecError(field, f"must be a string, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise SpecError(field, f"must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise SpecError(field, f"must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise SpecError(field, f"must be <= {self.maximum}, got {value!r}")
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


def resolve(table: Mapping[str, Param], given: Optional[Mapping[str, Any]], prefix: str = "hyperparameters") -> dict:
    """Merge `given` over the defaults, rejecting unknown names and bad values."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise SpecError(prefix, "must be an object")
    for name in given:
        if name not in table:
            raise SpecError(f"{prefix}.{name}", f"unknown hyper-parameter; known: {sorted(table)}")
    return {name: param.check(f"{prefix}.{name}", given.get(name, param.default)) for name, param in table.items()}


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
