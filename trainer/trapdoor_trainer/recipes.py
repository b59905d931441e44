"""The optimiser and learning-rate schedule of a training phase.

T&R and the no-defense model train with Adam and a cosine schedule (the T&R code's recipe); the
baselines default to the recipes their authors published (NAD's step-decayed Nesterov SGD, ABL's
constant SGD, ...), each cited where the method declares it. A method offers both through its
`recipe` hyper-parameter: "published" (the default) or "adam", the uniform Adam + cosine recipe
every baseline ran with before, kept so old results can be reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .hyperparams import Param

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant", "step")
RECIPE_CHOICES = ("published", "adam")


@dataclass(frozen=True)
class Recipe:
    optimizer: str = "adam"
    momentum: float = 0.0  # SGD only
    nesterov: bool = False  # SGD only
    schedule: str = "cosine"  # cosine: annealed per epoch to 0 over the phase; constant; step: see drops
    # schedule "step": (share of the phase's epochs, multiplier): from the first epoch at or past
    # share x epochs the rate is base x multiplier (later entries win). Shares, not epoch numbers,
    # so a recipe published for 20 or 60 epochs keeps its shape at the epochs a job asks for.
    drops: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS or self.schedule not in SCHEDULES:
            raise ValueError(f"unknown optimizer {self.optimizer!r} or schedule {self.schedule!r}")

    def make(self, parameters: list, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=lr, momentum=self.momentum, nesterov=self.nesterov, weight_decay=weight_decay)
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)

    def lr_at(self, base_lr: float, epoch: int, epochs: int) -> float:
        """The rate of `epoch` (0-based) in a phase of `epochs`, stepped once per epoch."""
        if self.schedule == "cosine":  # as torch's CosineAnnealingLR with T_max = epochs
            return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
        factor = 1.0
        if self.schedule == "step":
            for share, multiplier in self.drops:
                if epoch >= share * epochs:
                    factor = multiplier
        return base_lr * factor

    def describe(self, lr: float, weight_decay: float) -> dict:
        """What a run's `resolved` section states about a phase's recipe."""
        out: dict = {"optimizer": self.optimizer, "lr": lr, "weightDecay": weight_decay, "schedule": self.schedule}
        if self.optimizer == "sgd":
            out.update(momentum=self.momentum, nesterov=self.nesterov)
        if self.schedule == "step":
            out["drops"] = [list(d) for d in self.drops]
        return out


ADAM_COSINE = Recipe()


def recipe_param(published: str) -> Param:
    """The `recipe` hyper-parameter of a baseline; `published` says where its recipe comes from."""
    return Param("published", "str", f"optimiser and schedule: 'published' = {published}; 'adam' = Adam + cosine at the no-defense rate, what every baseline used before", choices=RECIPE_CHOICES)


@dataclass(frozen=True)
class PhaseRecipe:
    """One phase of a baseline under each choice of `recipe`: optimiser, default rate and weight decay."""

    published: Recipe
    published_lr: float
    published_weight_decay: float
    adam_lr: float = 1e-3
    adam_weight_decay: float = 5e-4

    def resolve(self, hp: dict, lr_key: Optional[str] = None, weight_decay_key: Optional[str] = None) -> tuple[Recipe, float, float]:
        """(recipe, learning rate, weight decay) for a job; the job's own values where it gives them."""
        if hp.get("recipe", "published") == "published":
            recipe, lr, weight_decay = self.published, self.published_lr, self.published_weight_decay
        else:
            recipe, lr, weight_decay = ADAM_COSINE, self.adam_lr, self.adam_weight_decay
        given_lr = hp.get(lr_key) if lr_key else None
        given_wd = hp.get(weight_decay_key) if weight_decay_key else None
        return recipe, lr if given_lr is None else given_lr, weight_decay if given_wd is None else given_wd

    def describe(self, hp: dict, lr_key: Optional[str] = None, weight_decay_key: Optional[str] = None) -> dict:
        """The phase's resolved recipe, for a run's `resolved` section."""
        recipe, lr, weight_decay = self.resolve(hp, lr_key, weight_decay_key)
        return recipe.describe(lr, weight_decay)
