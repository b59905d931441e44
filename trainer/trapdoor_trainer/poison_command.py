"""`poison`: build a poisoned canonical dataset (and optionally its ASR test set) from clean ones.

poison.json: {"source": DIR, "attack": {"name", "target", "params"?}, "ratio": 0.1, "seed": 0,
"test": DIR?}. The output carries `poison_mask.npy` (ground truth for efficacy studies) and
records the attack in its manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .data import load_canonical, write_canonical
from .errors import SpecError

KEYS = {"source", "attack", "ratio", "seed", "test"}


def parse_poison_spec(raw: Any) -> dict:
    from .spec import _parse_attack

    if not isinstance(raw, dict):
        raise SpecError("spec", "must be a JSON object")
    for key in raw:
        if key not in KEYS:
            raise SpecError(key, f"unknown field; known: {sorted(KEYS)}")
    if not isinstance(raw.get("source"), str):
        raise SpecError("source", "is required: the clean canonical dataset directory")
    attack = _parse_attack(raw.get("attack"))
    if attack is None:
        raise SpecError("attack", "is required")
    ratio = raw.get("ratio", 0.1)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise SpecError("ratio", f"must be a number in (0, 1], got {ratio!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError("seed", f"must be a non-negative integer, got {seed!r}")
    test = raw.get("test")
    if test is not None and not isinstance(test, str):
        raise SpecError("test", "must be a dataset directory path")
    return {"source": raw["source"], "attack": attack, "ratio": float(ratio), "seed": seed, "test": test}


def run_poison(spec_path: str, out: Path, asr_out: Optional[Path]) -> None:
    from .attacks import make_asr_set, poison_dataset

    try:
        raw = json.loads(Path(spec_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError("spec", f"cannot read {spec_path}: {e}") from None
    spec = parse_poison_spec(raw)
    attack = spec["attack"]
    if asr_out is not None and spec["test"] is None:
        raise SpecError("test", "is required when an ASR test set is asked for (--asr-out)")
    source = load_canonical(spec["source"], "source")
    if attack.target >= source.num_classes:
        raise SpecError("attack.target", f"must be below the number of classes ({source.num_classes})")
    result = poison_dataset(source.images, source.labels, attack=attack.name, target=attack.target, ratio=spec["ratio"], seed=spec["seed"], params=attack.params)
    record = {"attack": attack.name, "target": attack.target, "params": attack.params, "ratio": spec["ratio"], "seed": spec["seed"], "poisoned": int(result.poison_mask.sum())}
    write_canonical(out, result.images, result.labels, num_classes=source.num_classes, class_names=source.class_names, poison_mask=result.poison_mask, extra={"poison": record})
    if asr_out is not None:
        test = load_canonical(spec["test"], "test")
        images, labels = make_asr_set(test.images, test.labels, result.trigger, attack.target)
        write_canonical(asr_out, images, labels, num_classes=test.num_classes, class_names=test.class_names, extra={"asrFor": record})
