"""Built-in poisoning of a clean training set, and the ASR test set (spec: "Data protocol").

- Dirty-label, all-to-one: N = int(ratio * N_total) victims drawn from the non-target images
  with a numpy Generator seeded by `seed`; their labels become the target.
- Clean-label (SIG, LCBA): N = int(ratio * N_total) victims drawn from the target class; labels
  unchanged. Such an attack can only poison images of the target class: a ratio asking for more
  than that class holds is refused (attack.ratio), never silently capped, so the ratio a caller
  reports is the ratio that was applied.
A ratio that poisons no image at all is refused as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import SpecError
from .base import Trigger
from .registry import build_trigger, get_attack, resolve_params


@dataclass
class PoisonResult:
    images: np.ndarray  # uint8 N x H x W x C
    labels: np.ndarray  # int64 N
    poison_mask: np.ndarray  # bool N, True where this service poisoned the sample
    trigger: Trigger


def victim_count(ratio: float, total: int) -> int:
    # int(ratio * N) as the reference code does, but immune to float error (0.29 * 100 -> 29, not 28).
    return int(math.floor(ratio * total + 1e-9))


def max_reachable_ratio(reachable: int, total: int) -> float:
    """The largest ratio whose victim count (victim_count) stays within `reachable` images."""
    return reachable / total if total else 0.0


def select_victims(labels: np.ndarray, *, target: int, ratio: float, seed: int, clean_label: bool) -> np.ndarray:
    """Sorted indices of the samples to poison."""
    wanted = victim_count(ratio, len(labels))
    if wanted == 0:
        raise SpecError("attack.ratio", f"ratio {ratio:g} of {len(labels)} images poisons no image; the smallest that poisons one is {1 / max(len(labels), 1):.3g}")
    if clean_label:
        pool = np.flatnonzero(labels == target)
        if len(pool) == 0:
            raise SpecError("attack.target", f"no training image has the target class {target}; a clean-label attack has nothing to poison")
        where = f"a clean-label attack can only poison the {len(pool)} images of the target class {target}"
    else:
        pool = np.flatnonzero(labels != target)
        where = f"only {len(pool)} images are not of the target class {target}"
    if wanted > len(pool):
        raise SpecError(
            "attack.ratio",
            f"asks for {wanted} poisoned images, but {where} (ratio at most {max_reachable_ratio(len(pool), len(labels)):.6g})",
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=wanted, replace=False))


def _check_dataset(images: np.ndarray, labels: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError("images must be a uint8 array N x H x W x C")
    if np.ndim(labels) != 1 or len(labels) != len(images):
        raise ValueError("labels must be a 1-D array with one label per image")


def poison_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    attack: str,
    target: int,
    ratio: float,
    seed: int,
    params: Optional[Mapping[str, Any]] = None,
    device: str = "cpu",
) -> PoisonResult:
    """A poisoned copy of (images, labels); the inputs are left untouched."""
    _check_dataset(images, labels)
    info = get_attack(attack)
    resolved = resolve_params(attack, params)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0:
        raise SpecError("attack.target", f"must be an integer >= 0, got {target!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise SpecError("attack.ratio", f"must be a number in [0, 1], got {ratio!r}")
    labels = np.asarray(labels, dtype=np.int64)
    target = int(target)
    victims = select_victims(labels, target=target, ratio=ratio, seed=seed, clean_label=info.clean_label)
    trigger = build_trigger(
        attack, resolved, images.shape[1:], seed=seed, train_images=images, train_labels=labels, target=target, device=device
    )
    poisoned_images = images.copy()
    poisoned_labels = labels.copy()
    if len(victims):
        poisoned_images[victims] = trigger.poison(images[victims])
    if not info.clean_label:
        poisoned_labels[victims] = target
    mask = np.zeros(len(labels), dtype=bool)
    mask[victims] = True
    return PoisonResult(poisoned_images, poisoned_labels, mask, trigger)


def make_asr_set(images: np.ndarray, labels: np.ndarray, trigger: Trigger, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Triggered copies of the non-target images, with their true labels (the ASR denominator)."""
    _check_dataset(images, labels)
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels != target
    return trigger.apply(images[keep]), labels[keep].copy()
