"""ASR floor: how often models trained on *unpoisoned* data send each attack's triggered test images
to the target class anyway. A defended model's ASR is only a backdoor where it rises above this.

    python bench/efficacy/floor.py --profile cpu

Reads the cached `clean` cells of bench/efficacy/run.py (their exported models) and each attack's
triggered test set; writes the `efficacy-floor-<profile>` block of bench/EFFICACY.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import load_bench_module, replace_section  # noqa: E402

import torch  # noqa: E402

from trapdoor_trainer.data import DeviceData, load_canonical  # noqa: E402
from trapdoor_trainer.export import load_exported_model  # noqa: E402
from trapdoor_trainer.metrics import attack_success_rate  # noqa: E402

_run = load_bench_module("efficacy/run.py")  # the study's attacks, target and cache layout


def clean_models(root: Path) -> list[tuple[str, Path]]:
    """(label, workdir) of every finished cell trained without poison."""
    out = []
    for path in sorted((root / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        cell = record["cell"]
        workdir = root / "work" / record.get("sameRunAs", record["key"])
        if cell["attack"] == "clean" and (workdir / "model.safetensors").exists():
            overrides = "".join(f" {k}={v}" for k, v in cell["overrides"].items())
            out.append((f"{cell['config']}{overrides}, seed {cell['seed']}", workdir))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    root = _run.OUT / args.profile
    attacks = [a for a in _run.DEV + _run.HELD_OUT if (root / "attacks" / a / "asr" / "manifest.json").exists()]
    asr_sets = {}
    for attack in attacks:
        data = load_canonical(root / "attacks" / attack / "asr", field="asrTest")
        asr_sets[attack] = DeviceData(data.images, data.labels, torch.device("cpu"))
    lines = [f"Triggered test images sent to the target by models trained on **unpoisoned** data (profile `{args.profile}`, ASR %):", "",
             "| model (trained on clean data) | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
    for label, workdir in clean_models(root):
        model = load_exported_model(workdir)
        rates = [100 * attack_success_rate(model, asr_sets[a], _run.TARGET, 1000) for a in attacks]
        lines.append(f"| {label} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
    text = "\n".join(lines)
    replace_section(f"efficacy-floor-{args.profile}", text, _run.EFFICACY_MD)
    print(text)


if __name__ == "__main__":
    main()
