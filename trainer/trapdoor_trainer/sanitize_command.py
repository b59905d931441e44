"""`sanitize`: a canonical training set without the samples a health report flagged.

sanitize.json: {"source": DIR, "scores": health_scores.npy of a job that trained on DIR,
"policy": exactly one of {"dropTopFraction": f} (0 < f < 1: the round(f * N) highest scores,
ties to the lower index, as the report ranks them), {"minScore": s} (every sample scoring s or
more) or {"indices": [...]} (these samples)}. The output keeps the source's order, classes and
poison mask (where it has one, so what a policy removed can be measured) and records the policy
and the removed count in its manifest under `sanitized`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .data import load_canonical, write_canonical
from .errors import SpecError

POLICIES = ("dropTopFraction", "minScore", "indices")


def parse_policy(raw: Any) -> tuple[str, Any]:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in POLICIES:
        raise SpecError("policy", f"must hold exactly one of {', '.join(POLICIES)}")
    name, value = next(iter(raw.items()))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "dropTopFraction" and not (number and 0 < value < 1):
        raise SpecError("policy.dropTopFraction", f"must be a number in (0, 1), got {value!r}")
    if name == "minScore" and not (number and math.isfinite(value)):
        raise SpecError("policy.minScore", f"must be a finite number, got {value!r}")
    if name == "indices" and not (isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) for i in value)):
        raise SpecError("policy.indices", "must be a non-empty list of sample indices")
    return name, value


def removed_samples(scores: np.ndarray, policy: tuple[str, Any]) -> np.ndarray:
    """Indices the policy removes, ascending."""
    name, value = policy
    n = len(scores)
    if name == "dropTopFraction":
        order = np.argsort(-scores, kind="stable")  # highest first, ties to the lower index
        return np.sort(order[: int(round(value * n))])
    if name == "minScore":
        return np.flatnonzero(scores >= value)
    index = np.asarray(value, dtype=np.int64)
    if index.min() < 0 or index.max() >= n:
        raise SpecError("policy.indices", f"every index must be in [0, {n})")
    if len(np.unique(index)) != len(index):
        raise SpecError("policy.indices", "lists a sample more than once")
    return np.sort(index)


def run_sanitize(spec_path: str, out: Path) -> None:
    try:
        spec = json.loads(Path(spec_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError("spec", f"cannot read {spec_path}: {e}") from None
    policy = parse_policy(spec.get("policy"))
    source = load_canonical(spec["source"], "source")
    try:
        scores = np.load(spec["scores"], allow_pickle=False)
    except (OSError, ValueError, KeyError) as e:
        raise SpecError("scores", f"cannot read the health scores: {e}") from None
    if scores.shape != (len(source),):
        raise SpecError("scores", f"scores {scores.shape} samples; the dataset holds {len(source)}")
    removed = removed_samples(scores.astype(np.float64), policy)
    if len(removed) == 0:
        raise SpecError("policy", "removes no sample; the sanitized set would equal its source")
    if len(removed) >= len(source):
        raise SpecError("policy", "removes every sample")
    keep = np.setdiff1d(np.arange(len(source)), removed)
    mask = None if source.poison_mask is None else source.poison_mask[keep]
    record = {"policy": dict([policy]), "removedCount": int(len(removed)), "kept": int(len(keep))}
    if source.poison_mask is not None:  # ground truth, where the set was poisoned by this service
        record["removedPoisoned"] = int(source.poison_mask[removed].sum())
    write_canonical(out, source.images[keep], source.labels[keep], num_classes=source.num_classes, class_names=source.class_names, poison_mask=mask, extra={"sanitized": record})
