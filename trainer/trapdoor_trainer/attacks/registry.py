"""The attack registry: names, parameter tables with defaults, and trigger builders.

Adding an attack = one module in this package whose trigger builder is decorated:

    @ATTACKS.register("blend", description="...", params={"alpha": alpha_param("blend weight")})
    def blend(image_shape, params, **_) -> Trigger: ...

The builder is called as build(image_shape, resolved_params, *, seed, train_images, train_labels,
target, device) and ignores what it does not need. `params` is the attack's parameter table
(hyperparams.Param / Checked): the catalog publishes it as `paramsSchema`, and `resolve_params`
validates through that schema before the table's semantic checks and `cross_check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .. import hyperparams
from ..hyperparams import Param
from ..registry import Registry
from .base import Trigger

PARAMS_FIELD = "attack.params"
# Procedural triggers are fixed by default so every job with the same attack sees the same
# pattern; `triggerSeed` picks another one.
DEFAULT_TRIGGER_SEED = 2022

Builder = Callable[..., Trigger]


@dataclass(frozen=True)
class Attack:
    name: str
    build: Builder  # (image_shape, params, *, seed, train_images, train_labels, target, device)
    description: str
    table: Mapping[str, Any]  # param name -> Param | Checked
    clean_label: bool = False
    cross_check: Optional[Callable[[dict], None]] = None  # semantic check across params, after the per-param ones
    needs_training_data: bool = False
    order: int = 0  # position in listings
    schema: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", hyperparams.table_schema(self.table))

    @property
    def params(self) -> dict:
        """Param name -> default (None where the param is required)."""
        return {k: p.default for k, p in self.table.items()}

    def validate(self, params: Any) -> None:
        """Schema validation only (what the service checks too); SpecError names the field."""
        hyperparams.validate(self.table, params, PARAMS_FIELD, schema=self.schema, unknown=self._unknown)

    def resolve(self, params: Any) -> dict:
        """Defaults merged with `params` after the schema, the per-param semantic checks and `cross_check`."""
        resolved = hyperparams.resolve(self.table, params, PARAMS_FIELD, schema=self.schema, unknown=self._unknown)
        if self.cross_check is not None:
            self.cross_check(resolved)
        return resolved

    @property
    def _unknown(self) -> str:
        return f"parameter of attack {self.name!r}"

    def describe(self) -> dict:
        return {"name": self.name, "cleanLabel": self.clean_label, "description": self.description, "params": self.params, "paramsSchema": self.schema}


AttackInfo = Attack  # what list_attacks() / get_attack() return, under its older name


def _make(name: str, build: Builder, *, params: Optional[Mapping[str, Any]] = None, **info: Any) -> Attack:
    return Attack(name=name, build=build, table=dict(params or {}), **info)


ATTACKS: Registry[Attack] = Registry("attack", "attack.name", _make, package=__package__)


def trigger_seed_param() -> Param:
    return Param(DEFAULT_TRIGGER_SEED, "int", "seed of the procedurally generated trigger pattern", minimum=0, maximum=2**32 - 1)


def alpha_param(doc: str) -> Param:
    return Param(0.2, "float", doc, minimum=0.0, maximum=1.0)


def list_attacks() -> list[Attack]:
    return ATTACKS.entries()


def get_attack(name: str) -> Attack:
    return ATTACKS.get(name)


def describe_attacks() -> list[dict]:
    return [attack.describe() for attack in ATTACKS.entries()]


def resolve_params(name: str, params: Optional[Mapping[str, Any]]) -> dict:
    """Defaults merged with `params` after schema validation and the semantic checks; SpecError names the bad field."""
    return ATTACKS.get(name).resolve(params)


def build_trigger(
    name: str,
    params: Optional[Mapping[str, Any]],
    image_shape: Sequence[int],
    *,
    seed: int,
    train_images: Optional[np.ndarray] = None,
    train_labels: Optional[np.ndarray] = None,
    target: int = 0,
    device: str = "cpu",
) -> Trigger:
    """The trigger of attack `name` for images of `image_shape` (H, W, C with C = 1 or 3).

    LBA fits a surrogate on the clean `train_images`/`train_labels` here; LCBA does so on its first
    poison() call (its apply() is the plain four-corner grid); the others ignore them.
    """
    attack = ATTACKS.get(name)
    resolved = resolve_params(name, params)
    image_shape = tuple(int(v) for v in image_shape)
    if len(image_shape) != 3 or image_shape[2] not in (1, 3) or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) with C in (1, 3), got {image_shape}")
    if attack.needs_training_data and (train_images is None or train_labels is None):
        raise ValueError(f"attack {name!r} needs the clean training images and labels for its surrogate")
    return attack.build(
        image_shape,
        resolved,
        seed=seed,
        train_images=train_images,
        train_labels=None if train_labels is None else np.asarray(train_labels, dtype=np.int64),
        target=target,
        device=device,
    )
