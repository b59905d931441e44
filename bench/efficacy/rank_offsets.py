"""Offline check of one idea for the clean-data cost (issue 15, item 1): rank isolation by each
sample's score minus a quantile of its own class's scores, so that a class the probe finds hard
(T-shirts on clean Fashion-MNIST) stops filling the dropped 15 %. It reads the scores the default's
cells already wrote (bench/out/efficacy/<profile>/work/<key>/health_scores.npy: the isolation
ranking, one score per training sample) and the poison masks, so it trains nothing:

    python3 bench/efficacy/rank_offsets.py --profile cpu --quantiles 0.1,0.5

For each cell: the poison recall of the top isolateFraction and the largest share of one class
dropped, raw and offset.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1] / "out" / "efficacy"
FRACTION = 0.15  # the default's isolateFraction


def dropped(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> tuple[float, float, int]:
    """(poison recall, largest share of a class dropped, that class) for the top FRACTION of `scores`."""
    top = np.argsort(-scores, kind="stable")[: int(round(FRACTION * len(scores)))]
    classes = int(labels.max()) + 1
    share = np.bincount(labels[top], minlength=classes) / np.maximum(np.bincount(labels, minlength=classes), 1)
    return float(mask[top].sum() / max(int(mask.sum()), 1)), float(share.max()), int(share.argmax())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--quantiles", default="0.1,0.5")
    args = parser.parse_args()
    quantiles = [float(q) for q in args.quantiles.split(",")]
    root = ROOT / args.profile
    print("| attack | seed | poisoned | raw: recall / largest class dropped | " + " | ".join(f"offset q{q}" for q in quantiles) + " |")
    print("|---|---|---|---|" + "---|" * len(quantiles))
    records = [json.loads(path.read_text()) for path in (root / "cells").glob("*.json")]
    for record in sorted(records, key=lambda r: (r["cell"]["attack"] != "clean", r["cell"]["attack"], r["cell"]["seed"])):
        cell, work = record["cell"], root / "work" / record["key"]
        if cell["config"] not in ("default", "default-fixed") or cell["overrides"] or not (work / "health_scores.npy").exists():
            continue
        scores = np.load(work / "health_scores.npy").astype(np.float64)
        train = Path(json.loads((work / "spec.json").read_text())["data"]["train"])
        if not (train / "labels.npy").exists():  # an attack's data removed since: nothing to re-rank against
            continue
        labels = np.load(train / "labels.npy")
        mask = np.load(train / "poison_mask.npy") if (train / "poison_mask.npy").exists() else np.zeros(len(labels), bool)
        cells = []
        for q in [None, *quantiles]:
            ranked = scores if q is None else scores - np.array([np.quantile(scores[labels == c], q) if (labels == c).any() else 0.0 for c in range(int(labels.max()) + 1)])[labels]
            recall, share, worst = dropped(ranked, labels, mask)
            cells.append(f"{'–' if not mask.any() else f'{100 * recall:.0f} %'} / {100 * share:.0f} % (class {worst})")
        print(f"| {cell['attack']} | {cell['seed']} | {int(mask.sum())} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
