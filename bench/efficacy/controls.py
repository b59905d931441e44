"""Blend's residual ASR against its floor: is what a defended model sends to the target the
backdoor, or what blending a picture over a garment does to any model of the same pipeline?

    python bench/efficacy/controls.py --profile cpu
    python bench/efficacy/controls.py --profile cpu --render-only

A run measures only the models bench/efficacy/controls-<profile>.json does not hold yet.

For every cached Blend (10, 1, 0.5 %) or clean cell of the default or no defense (run.py's cells whose model is
still in bench/out), the share of non-target test images sent to the target when blended with
Blend's trigger, and with CONTROLS other pictures of the same kind (`triggerSeed` 1..10, same
alpha), which no training set held. A model trained on clean data that sends many blended images
to the target anyway sets the floor a defended model is compared with; the same pipeline's
floor is the default trained on clean data with the target class left out of stage 2's training
samples (`stage2WhenNotPoisoned: off-candidate`: on clean Fashion-MNIST the candidate is class 0,
the study's target, so its stage 2 sees what `off-target` sees on a poisoned set).
The figures land in bench/efficacy/controls-<profile>.json (committed) and the
`efficacy-controls-<profile>` block of bench/EFFICACY.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import load_bench_module, replace_section  # noqa: E402

import torch  # noqa: E402

from trapdoor_trainer.attacks.registry import DEFAULT_TRIGGER_SEED, build_trigger  # noqa: E402
from trapdoor_trainer.data import DeviceData, load_canonical  # noqa: E402
from trapdoor_trainer.export import load_exported_model  # noqa: E402
from trapdoor_trainer.metrics import attack_success_rate  # noqa: E402

run = load_bench_module("efficacy/run.py")
committed = load_bench_module("efficacy/committed.py")

CONTROLS = range(1, 11)  # trigger seeds of the control pictures (Blend's own is DEFAULT_TRIGGER_SEED)
MODELS = {"clean": "clean data", "blend@0.005": "Blend, 0.5 % poison", "blend@0.01": "Blend, 1 % poison", "blend": "Blend, 10 % poison"}


def shown(cell: dict) -> bool:
    """Cells of the default (any stage-2 rule, any length) or of no defense, nothing else asked."""
    return cell["attack"] in MODELS and cell["config"] in ("default", "none") and not committed.asked(cell, committed.EPOCH_KEYS)


def blended(images: np.ndarray, trigger_seed: int) -> np.ndarray:
    trigger = build_trigger("blend", {"triggerSeed": trigger_seed}, images.shape[1:], seed=0)
    return trigger.apply(images)


def measure(root: Path, known: dict) -> list[dict]:
    """The figures of every shown cell: `known` ones (by cell key) as measured before, a model's
    figures do not change (its labels are read again from the cell); the others from their exported
    model, where bench/out still has it. Known rows whose cell is not in bench/out are kept."""
    test = load_canonical(root / "test", field="test")
    keep = test.labels != run.TARGET
    images, labels = test.images[keep], test.labels[keep]
    sets = {seed: DeviceData(blended(images, seed), labels, torch.device("cpu")) for seed in (DEFAULT_TRIGGER_SEED, *CONTROLS)}
    rows, seen = [], set()
    for path in sorted((root / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        workdir = root / "work" / record.get("sameRunAs", record["key"])
        if not shown(record["cell"]):
            continue
        seen.add(record["key"])
        if record["key"] in known:
            rates = {DEFAULT_TRIGGER_SEED: known[record["key"]]["trigger"], **dict(zip(CONTROLS, known[record["key"]]["controls"]))}
        elif (workdir / "model.safetensors").exists():
            model = load_exported_model(workdir)
            rates = {seed: attack_success_rate(model, data, run.TARGET, 1000) for seed, data in sets.items()}
        else:
            continue
        rows.append({
            "key": record["key"], "attack": record["cell"]["attack"], "config": record["cell"]["config"], "seed": record["cell"]["seed"],
            "epochs": committed.epochs_of(record),
            "stage2": committed.stage2_label(record) if record["cell"]["config"] == "default" else "–",
            "trigger": rates[DEFAULT_TRIGGER_SEED], "controls": [rates[seed] for seed in CONTROLS],
        })
    return rows + [row for key, row in known.items() if key not in seen]


def render(rows: list[dict], profile: str) -> str:
    lines = committed.table_head(
        f"Non-target test images sent to the target (%), profile `{profile}`: blended at alpha 0.2 with Blend's trigger, and with {len(CONTROLS)} "
        "other pictures of its kind no training set held (mean and max). Rendered by `python3 bench/efficacy/controls.py --profile cpu`.",
        ["trained on", "method", "the rule that applied", "seed", "stage-1 epochs", "Blend's trigger", "control pictures: mean", "max"],
    )
    order = list(MODELS)
    for r in sorted(rows, key=lambda r: (order.index(r["attack"]), r["config"] != "none", r["seed"], r["epochs"], r["stage2"])):
        trained = MODELS[r["attack"]]
        method = "no defense" if r["config"] == "none" else "default"
        lines.append(f"| {trained} | {method} | {r['stage2']} | {r['seed']} | {r['epochs']} | {100 * r['trigger']:.1f} "
                     f"| {100 * np.mean(r['controls']):.1f} | {100 * max(r['controls']):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--render-only", action="store_true", help="re-render from the committed JSON")
    args = parser.parse_args()
    saved = Path(__file__).resolve().parent / f"controls-{args.profile}.json"
    if args.render_only:
        rows = json.loads(saved.read_text())
    else:
        known = {r["key"]: r for r in json.loads(saved.read_text())} if saved.exists() else {}
        rows = measure(run.OUT / args.profile, known)
        saved.write_text(json.dumps(rows, indent=1) + "\n")
    text = render(rows, args.profile)
    replace_section(f"efficacy-controls-{args.profile}", text, run.EFFICACY_MD)
    print(text)


if __name__ == "__main__":
    main()
