"""How the trainer's time grows with the training set: Fashion-MNIST subsets of 1k to 60k images,
one epoch of NO_DEFENSE and the default T&R (isolation included) at 1 + 1 epochs, WRN-16-1, through
the trainer's CLI as the worker runs it. Wall time per run (process start, data loading and export
included) and the phases' own seconds. Clean data: poisoning does not change the cost.

    python bench/cost/trainer.py [--sizes 1000,3000,10000,30000,60000] [--out bench/out/cost]

Writes trainer.json in --out (bench/cost/plot.py draws it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, trainer  # noqa: E402

from trapdoor_trainer.data import write_canonical  # noqa: E402
from trapdoor_trainer.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist  # noqa: E402

HOLDOUT_FRACTION = 0.05
RUNS = {
    "NO_DEFENSE": {"epochs": 1},
    "TRAP_AND_REPLACE": {"stage1Epochs": 1, "stage2Epochs": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,3000,10000,30000,60000")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "cost")
    args = parser.parse_args()
    data = load_fashion_mnist(FASHION_MNIST_DIR)
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_canonical(root / "test", test_x[:2000], test_y[:2000], num_classes=10, class_names=FASHION_MNIST_CLASSES)
        for size in (int(s) for s in args.sizes.split(",")):
            split = size - int(HOLDOUT_FRACTION * size)
            for name, part in (("train", slice(0, split)), ("holdout", slice(split, size))):
                write_canonical(root / f"{name}-{size}", train_x[part], train_y[part], num_classes=10, class_names=FASHION_MNIST_CLASSES)
            for method, hp in RUNS.items():
                spec = {
                    "method": method, "architecture": "wrn16-1", "seed": 0, "device": "cpu", "hyperparameters": {**hp, "evalEvery": 0},
                    "data": {"train": str(root / f"train-{size}"), "holdout": str(root / f"holdout-{size}"), "test": str(root / "test")},
                }
                spec_path = root / f"{method}-{size}.json"
                spec_path.write_text(json.dumps(spec))
                started = time.perf_counter()
                events = trainer("run", "--spec", str(spec_path), "--workdir", str(root / f"w-{method}-{size}"))
                result = next(e for e in events if e["type"] == "result")
                row = {"images": size, "method": method, "wallSeconds": time.perf_counter() - started, "timings": result["timings"], "device": result["device"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
