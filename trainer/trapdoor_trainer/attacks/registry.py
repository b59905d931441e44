"""The attack registry: names, parameter tables with defaults, and trigger builders.

Adding an attack = one module that returns a `Trigger` plus one `_register` call here. The
parameter table (hyperparams.Param / Checked) is published as the attack's `paramsSchema`, and
`resolve_params` validates through that schema before the table's semantic checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .. import hyperparams
from ..errors import SpecError
from ..hyperparams import Checked, Param
from ..models import ARCHITECTURES
from . import additive, blends, custom, lba, lcba, patches
from .base import MODES, Trigger

PARAMS_FIELD = "attack.params"
# Procedural triggers are fixed by default so every job with the same attack sees the same
# pattern; `triggerSeed` picks another one.
DEFAULT_TRIGGER_SEED = 2022


@dataclass(frozen=True)
class AttackInfo:
    name: str
    clean_label: bool
    params: dict  # param name -> default (None where required with no default)
    description: str
    schema: dict = field(repr=False, compare=False)  # JSON Schema of the params object

    def describe(self) -> dict:
        return {"name": self.name, "cleanLabel": self.clean_label, "description": self.description, "params": self.params, "paramsSchema": self.schema}


Builder = Callable[..., Trigger]


@dataclass(frozen=True)
class _Attack:
    info: AttackInfo
    table: Mapping[str, Any]  # name -> Param | Checked
    build: Builder  # (image_shape, params, *, seed, train_images, train_labels, target, device)
    cross_check: Optional[Callable[[dict], None]] = None
    needs_training_data: bool = False

    @property
    def _unknown(self) -> str:
        return f"parameter of attack {self.info.name!r}"

    def validate(self, params: Any) -> None:
        """Schema validation only (what the service checks too); SpecError names the field."""
        hyperparams.validate(self.table, params, PARAMS_FIELD, schema=self.info.schema, unknown=self._unknown)

    def resolve(self, params: Any) -> dict:
        """Defaults merged with `params` after the schema, the per-param semantic checks and `cross_check`."""
        resolved = hyperparams.resolve(self.table, params, PARAMS_FIELD, schema=self.info.schema, unknown=self._unknown)
        if self.cross_check is not None:
            self.cross_check(resolved)
        return resolved


_ATTACKS: dict[str, _Attack] = {}


def _register(
    name: str,
    description: str,
    build: Builder,
    table: Optional[Mapping[str, Any]] = None,
    *,
    clean_label: bool = False,
    cross_check: Optional[Callable[[dict], None]] = None,
    needs_training_data: bool = False,
) -> None:
    table = dict(table or {})
    info = AttackInfo(name, clean_label, {k: p.default for k, p in table.items()}, description, hyperparams.table_schema(table))
    _ATTACKS[name] = _Attack(info, table, build, cross_check, needs_training_data)


def _trigger_seed() -> Param:
    return Param(DEFAULT_TRIGGER_SEED, "int", "seed of the procedurally generated trigger pattern", minimum=0, maximum=2**32 - 1)


def _alpha(doc: str) -> Param:
    return Param(0.2, "float", doc, minimum=0.0, maximum=1.0)


def _surrogate_params() -> dict:
    return {
        "surrogateEpochs": Param(5, "int", "epochs of Adam on the clean data for the attacker's surrogate", minimum=0, maximum=1000),
        "surrogateArchitecture": Param("small-cnn", "str", "architecture of the surrogate", choices=tuple(ARCHITECTURES)),
    }


_register(
    "badnet_grid",
    "BadNet-Grid: a 3x3 black-and-white checker block overwritten at the bottom-right corner; labels flipped to the target.",
    lambda shape, params, **_: patches.badnet_grid(shape),
)
_register(
    "badnet_white",
    "BadNet-White: a 4x4 white square overwritten one pixel from the bottom-right corner; labels flipped to the target.",
    lambda shape, params, **_: patches.badnet_white(shape),
)
_register(
    "blend",
    "Blend: a natural-looking picture blended over the whole image at alpha 0.2; labels flipped to the target.",
    lambda shape, params, **_: blends.blend(shape, params["alpha"], params["triggerSeed"]),
    {"alpha": _alpha("blend weight of the trigger picture"), "triggerSeed": _trigger_seed()},
)
_register(
    "l0_invisible",
    "l0-Invisible: nine pixels of the bottom row overwritten with a fixed colour code; labels flipped to the target.",
    lambda shape, params, **_: patches.l0_invisible(shape),
)
_register(
    "l2_invisible",
    "l2-Invisible: dense faint additive noise (l2 norm 3.2 on the [0,1] scale); labels flipped to the target.",
    lambda shape, params, **_: additive.l2_invisible(shape, params["triggerSeed"]),
    {"triggerSeed": _trigger_seed()},
)
_register(
    "smooth",
    "Smooth: a faint low-frequency colour blob added, then each image min-max rescaled; labels flipped to the target.",
    lambda shape, params, **_: additive.smooth(shape, params["triggerSeed"]),
    {"triggerSeed": _trigger_seed()},
)
_register(
    "trojan_sq",
    "Trojan-SQ: a 3x3 coloured square added near the bottom-right corner; labels flipped to the target.",
    lambda shape, params, **_: patches.trojan_sq(shape),
)
_register(
    "trojan_wm",
    "Trojan-WM: a sparse coloured watermark of about 320 pixels added to the image; labels flipped to the target.",
    lambda shape, params, **_: additive.trojan_wm(shape, params["triggerSeed"]),
    {"triggerSeed": _trigger_seed()},
)
_register(
    "sig",
    "SIG (clean-label): a vertical stripe signal blended at alpha 0.2 into target-class training images, labels unchanged.",
    lambda shape, params, **_: blends.sig(shape, params["alpha"]),
    {"alpha": _alpha("blend weight of the stripe signal")},
    clean_label=True,
)
_register(
    "lcba",
    "LCBA (clean-label): target-class images adversarially perturbed against a surrogate, then marked with a grid at all four corners, labels unchanged.",
    lcba.lcba,
    {
        "epsilon": Param(16.0, "float", "l-inf bound of the PGD perturbation on the 0-255 scale", minimum=0, maximum=255),
        "pgdSteps": Param(10, "int", "PGD iterations", minimum=0, maximum=10000),
        "pgdStepSize": Param(4.0, "float", "PGD step on the 0-255 scale", minimum=0, maximum=255),
        **_surrogate_params(),
    },
    clean_label=True,  # its surrogate trains lazily, on the first poison(): apply() needs no data
)
_register(
    "lba",
    "LBA-n (adaptive): a bottom-right patch optimised so a surrogate's layer-n features of triggered images match the target class; labels flipped to the target.",
    lba.lba,
    {
        "layer": Param(14, "int", "WRN-16-1 layer whose input features are matched (14 = input of the last linear layer)", choices=(10, 12, 14)),
        "patchSize": Param(5, "int", "side of the square patch on the 32x32 scale", minimum=1, maximum=32),
        "optSteps": Param(200, "int", "Adam steps optimising the patch", minimum=0, maximum=100000),
        "optLr": Param(0.05, "float", "Adam learning rate for the patch (pixels in [0,1])", minimum=0, maximum=10),
        **_surrogate_params(),
    },
    needs_training_data=True,
)
_register(
    "custom",
    "Custom: your own trigger image (with optional mask) applied by overwrite, addition or blending; labels flipped to the target.",
    lambda shape, params, **_: custom.custom(shape, params["trigger"], params["mask"], params["mode"], params["alpha"]),
    {
        "trigger": Checked(
            {"type": ["array", "string"], "items": custom.IMAGE_ROWS},
            custom.check_trigger_image,
            "trigger image on the 0-255 scale: an H x W (x 1 or 3) nested list or the path of a .npy file",
            required=True,
        ),
        "mask": Checked(
            {"type": ["array", "string", "null"], "items": custom.IMAGE_ROWS},
            custom.check_mask,
            "per-pixel trigger weight in [0, 1] with the trigger's height and width (nested list or .npy path); null = the trigger's non-zero pixels (overwrite) or everywhere",
        ),
        "mode": Param("overwrite", "str", "how the trigger is applied", choices=MODES),
        "alpha": _alpha("blend weight (mode blend only)"),
    },
    cross_check=lambda p: custom.check_mask_fits_trigger(p["trigger"], p["mask"], PARAMS_FIELD),
)


def list_attacks() -> list[AttackInfo]:
    return [attack.info for attack in _ATTACKS.values()]


def _lookup(name: str) -> _Attack:
    attack = _ATTACKS.get(name) if isinstance(name, str) else None
    if attack is None:
        raise SpecError("attack.name", f"unknown attack {name!r}; known: {sorted(_ATTACKS)}")
    return attack


def get_attack(name: str) -> AttackInfo:
    return _lookup(name).info


def describe_attacks() -> list[dict]:
    return [attack.info.describe() for attack in _ATTACKS.values()]


def validate_params(name: str, params: Any) -> None:
    """Schema validation of an attack's params alone (no semantic checks)."""
    _lookup(name).validate(params)


def resolve_params(name: str, params: Optional[Mapping[str, Any]]) -> dict:
    """Defaults merged with `params` after schema validation and the semantic checks; SpecError names the bad field."""
    return _lookup(name).resolve(params)


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
    attack = _lookup(name)
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
