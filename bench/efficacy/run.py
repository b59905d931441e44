"""T&R efficacy study on Fashion-MNIST: a grid over attack x configuration x seed, every cell
cached on disk so the grid can be filled over several sittings, rendered to bench/EFFICACY.md
with plots.

    python bench/efficacy/run.py --profile cpu --attacks dev --configs paper,trap-first,isolate --seeds 0
    python bench/efficacy/run.py --profile cpu --attacks held-out --configs isolate --seeds 0
    python bench/efficacy/run.py --profile cpu --grid stage1Epochs=2,4,8 --configs paper --attacks dev
    python bench/efficacy/run.py --profile cpu --attacks "blend@0.005,blend@0.2,sig@0.25,blend#3" --configs none,default
    python bench/efficacy/run.py --render-only

A cell = (profile, attack, method + hyper-parameters, seed). Its result lands in
bench/out/efficacy/<profile>/cells/<key>.json; an interrupted cell resumes from its trainer
checkpoint. Defaults are chosen on the development attacks (DEV) with holdout-derived signals
only; the other attacks are reported as held out. The test set only ever measures.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, load_bench_module, trainer  # noqa: E402

_fmnist = load_bench_module("fmnist/run.py")  # the Fashion-MNIST split and poisoning conventions
TARGET, prepare_clean, poison_ratio = _fmnist.TARGET, _fmnist.prepare_clean, _fmnist.poison_ratio

from trapdoor_trainer.idx import FASHION_MNIST_DIR  # noqa: E402

DEV = ["badnet_grid", "blend", "sig"]
HELD_OUT = ["badnet_white", "l0_invisible", "l2_invisible", "smooth", "trojan_sq", "trojan_wm", "lcba"]
CLEAN = "clean"  # no poisoning: CA cost and the health report's false-positive check

PROFILES = {
    # 2 CPU cores: 3-8 min per cell at these sizes (stated in EFFICACY.md).
    "cpu": {"train": 16000, "test": 2000, "stage1Epochs": 6, "stage2Epochs": 10, "device": "cpu"},
    "gpu": {"train": 60000, "test": 10000, "stage1Epochs": 10, "stage2Epochs": 10, "device": "cuda"},
}

# Named T&R configurations (hyper-parameter overrides on top of the profile's epochs). Every T&R
# configuration names the hyper-parameters whose trainer default the study has changed
# (isolateFraction, lambda1), so a cached cell means the same whatever the default is now.
PAPER = {"isolateFraction": 0.0, "lambda1": 10.0}
ISOLATE = {**PAPER, "isolateFraction": 0.15}
DEFAULT = {**ISOLATE, "lambda1": 1.0}  # what the default and its isolation sizings share
CONFIGS = {
    "none": {"method": "NO_DEFENSE"},
    "paper": PAPER,
    "official-s2": {**PAPER, "stage2Recipe": "official", "stage2Epochs": None},
    "trap-first": {**PAPER, "stemCeScale": 0.0},
    "stem-ce-0.1": {**PAPER, "stemCeScale": 0.1},
    "isolate": ISOLATE,
    "isolate-trap-first": {**ISOLATE, "stemCeScale": 0.0},
    # The service's default (trainer defaults), chosen on the development attacks. Cells cached
    # before isolateSizing existed ran "fixed", cells cached before stage2WhenPoisoned or
    # stage2WhenNotPoisoned existed ran "holdout", those before stage1WhenPoisoned "all", those before
    # stage2Overlay none, and those with an overlay before stage2OverlayWhen overlaid on every set
    # (their hyper-parameters do not name them; the
    # configurations below that do not name them ran before these options, and run today's
    # trainer defaults when their cells are made anew).
    "default": {**DEFAULT, "isolateSizing": "grow", "stage1WhenPoisoned": "off-target", "stage2WhenPoisoned": "off-target", "stage2TargetWeight": 0.25,
                "stage2Overlay": 0.3, "stage2OverlayWhen": "poisoned",
                "stage1WhenNotPoisoned": "all", "stage2WhenNotPoisoned": "holdout"},
    "default-fixed": {**DEFAULT, "isolateSizing": "fixed"},
    "evidence": {**DEFAULT, "isolateSizing": "evidence"},
    # scanDataset's budgets: the verdict alone, from the trap and the probe (defenses/scan.py).
    "scan-fast": {"method": "SCAN", "budget": "FAST"},
    "scan-thorough": {"method": "SCAN", "budget": "THOROUGH"},
    # The baselines on their published recipes (each method's `recipe` default; the sources are in
    # its module's docstring and hyper-parameters). Epochs: baseline_budget below.
    "fp": {"method": "FINE_PRUNING"},
    # NAD's rates named: the first cells ran the official 0.1 (then the default), which wrecks
    # these Adam-trained models; the default is now BackdoorBench's 0.01 (defenses/nad.py).
    "nad": {"method": "NAD", "teacherLr": 0.01, "distillLr": 0.01},
    "ibau": {"method": "I_BAU"},
    "anp": {"method": "ANP"},
    "abl": {"method": "ABL"},
    "dp-sgd": {"method": "DP_SGD"},
}
# Post-training baselines defend the same attack's and seed's no-defense model (its cell's artifacts).
POST_TRAINING = {"FINE_PRUNING", "NAD", "I_BAU", "ANP"}


def baseline_budget(method: str, epochs: int) -> dict:
    """A baseline's epochs at the profile's no-defense budget `epochs`. Post-training methods keep
    their published counts (they pass over the 800-image holdout only), except ANP's 2 000 mask
    steps, a quarter of which fit the CPU profile's time; ABL splits the budget as its recipe
    splits 80 epochs (20 isolation + 60 fine-tuning: a third and two thirds) and unlearns its
    published 5 epochs; DP-SGD trains as long as no defense."""
    if method == "ABL":
        isolation = max(1, round(epochs / 3))
        return {"epochs": isolation, "finetuneEpochs": max(1, epochs - isolation), "unlearnEpochs": 5}
    if method == "DP_SGD":
        return {"epochs": epochs}
    if method == "ANP" and epochs < PROFILES["gpu"]["stage1Epochs"]:
        return {"maskIterations": 500}
    return {}

OUT = REPO / "bench" / "out" / "efficacy"
EFFICACY_MD = REPO / "bench" / "EFFICACY.md"


def cell_spec(profile: str, attack: str, config: str, overrides: dict, seed: int) -> dict:
    p = PROFILES[profile]
    conf = dict(CONFIGS[config])
    method = conf.pop("method", "TRAP_AND_REPLACE")
    if method == "NO_DEFENSE":  # only the epoch budget applies; other axes would duplicate the run
        overrides = {k: v for k, v in overrides.items() if k == "stage1Epochs"}
        hp = {"epochs": overrides.get("stage1Epochs", p["stage1Epochs"])}
    elif method != "TRAP_AND_REPLACE" and method != "SCAN":  # a baseline: its own budget, overrides on top
        hp = {**baseline_budget(method, overrides.get("stage1Epochs", p["stage1Epochs"])), **conf, **{k: v for k, v in overrides.items() if k != "stage1Epochs"}}
    elif method == "SCAN":  # the budget is a share of the T&R cell's stage-1 epochs
        overrides = {k: v for k, v in overrides.items() if k == "stage1Epochs"}
        hp = {"tnrStage1Epochs": overrides.get("stage1Epochs", p["stage1Epochs"]), **conf}
        return {"profile": profile, "attack": attack, "config": config, "overrides": overrides, "method": method, "hyperparameters": hp, "seed": seed}
    else:
        # A null the configuration or grid asks for is passed as null (stage2Epochs null = the
        # recipe's length), not dropped: the trainer's default is no longer null.
        hp = {"stage1Epochs": p["stage1Epochs"], "stage2Epochs": p["stage2Epochs"], **conf, **overrides}
    return {"profile": profile, "attack": attack, "config": config, "overrides": overrides, "method": method, "hyperparameters": {**hp, "evalEvery": 0}, "seed": seed}


def cell_key(cell: dict) -> str:
    return hashlib.sha256(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:16]


def parse_value(text: str):
    """An attack parameter's value in a cell name: JSON (12, 0.5, true), else the bare string (wrn16-1)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_attack(token: str) -> dict:
    """An attack cell's name: `blend` (the study's 10 % of the data, target 0), `blend@0.05` (5 % of
    the training split; for a clean-label attack, 5 % of the target class), `blend#3` (target 3),
    `lba:layer=12+surrogateArchitecture=wrn16-1` (attack parameters, joined by `+`: `--attacks` splits on commas), or several (`sig@0.25#3`).
    Plain names keep the cells cached before variants existed."""
    rest, _, target = token.partition("#")
    rest, _, ratio = rest.partition("@")
    name, _, given = rest.partition(":")
    params = {k: parse_value(v) for k, _, v in (item.partition("=") for item in given.split("+") if item)}
    return {"name": name, "ratio": float(ratio) if ratio else None, "target": int(target) if target else TARGET, "params": params}


def attack_ratio(parsed: dict, clean: dict) -> float:
    """The trainer's ratio (of the training split) for a parsed attack name."""
    from trapdoor_trainer.attacks.registry import get_attack

    clean_label = get_attack(parsed["name"]).clean_label
    if parsed["ratio"] is None and (parsed["target"] == TARGET or not clean_label):
        return poison_ratio(parsed["name"], clean)
    if not clean_label:
        return parsed["ratio"]
    labels = np.load(Path(clean["paths"]["train_clean"]) / "labels.npy")
    return (1.0 if parsed["ratio"] is None else parsed["ratio"]) * float((labels == parsed["target"]).mean())


def prepare_attack(root: Path, clean: dict, attack: str) -> dict:
    """Poisoned training split + triggered test set for `attack` (made once, shared by its cells)."""
    paths = clean["paths"]
    data = {"train": str(paths["train_clean"]), "holdout": str(paths["holdout"]), "test": str(paths["test"])}
    if attack == CLEAN:
        return data
    adir = root / "attacks" / attack
    if not (adir / "asr" / "manifest.json").exists():
        adir.mkdir(parents=True, exist_ok=True)
        parsed = parse_attack(attack)
        spec = {"source": str(paths["train_clean"]), "test": str(paths["test"]), "seed": 0, "attack": {"name": parsed["name"], "target": parsed["target"], "params": parsed["params"]},
                "ratio": attack_ratio(parsed, clean)}
        (adir / "poison.json").write_text(json.dumps(spec))
        trainer("poison", "--spec", str(adir / "poison.json"), "--out", str(adir / "train"), "--asr-out", str(adir / "asr"))
    return {**data, "train": str(adir / "train"), "asrTest": str(adir / "asr")}


def run_cell(root: Path, cell: dict, data: dict, device: str) -> dict:
    key = cell_key(cell)
    result_path = root / "cells" / f"{key}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    workdir = root / "work" / key
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / "checkpoints" / "latest.pt"
    if cell["method"] == "SCAN":  # as scanDataset runs it: the training set and the holdout only
        data = {"train": data["train"], "holdout": data["holdout"], "test": data["holdout"]}
    if cell["method"] in POST_TRAINING:
        data = {**data, "initModel": str(backdoored_model(root, cell, data, device))}
    spec = {"architecture": "wrn16-1", "data": data, "target": None if cell["attack"] == CLEAN or cell["method"] == "SCAN" else parse_attack(cell["attack"])["target"], "seed": cell["seed"], "device": device,
            "method": cell["method"], "hyperparameters": cell["hyperparameters"], "resumeFrom": str(checkpoint) if checkpoint.exists() else None}
    (workdir / "spec.json").write_text(json.dumps(spec))
    started = time.perf_counter()
    events = trainer("run", "--spec", str(workdir / "spec.json"), "--workdir", str(workdir))
    result = next(e for e in events if e["type"] == "result")
    health = workdir / "health.json"
    record = {"cell": cell, "key": key, "result": result, "wallSeconds": time.perf_counter() - started,
              "health": json.loads(health.read_text()) if health.exists() else None}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(record, indent=1))
    return record


def backdoored_model(root: Path, cell: dict, data: dict, device: str) -> Path:
    """The artifact directory of the no-defense cell a post-training baseline starts from (run first when missing)."""
    base = cell_spec(cell["profile"], cell["attack"], "none", {k: v for k, v in cell["overrides"].items() if k == "stage1Epochs"}, cell["seed"])
    run_cell(root, base, data, device)
    model_dir = root / "work" / cell_key(base)
    if not (model_dir / "model.safetensors").exists():
        raise SystemExit(f"{model_dir} has no model: delete {root / 'cells' / (cell_key(base) + '.json')} to re-run the no-defense cell")
    return model_dir


def parse_grid(text: str | None) -> list[dict]:
    """"stage1Epochs=2,4;lambda1=0,10" -> the cartesian product as override dicts."""
    if not text:
        return [{}]
    axes = []
    for part in text.split(";"):
        name, values = part.split("=")
        axes.append([(name, json.loads(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def attack_list(text: str) -> list[str]:
    groups = {"dev": DEV, "held-out": HELD_OUT, "all": DEV + HELD_OUT, "clean": [CLEAN]}
    out = []
    for name in text.split(","):
        out.extend(groups.get(name, [name]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--attacks", default="dev", help="names or groups: dev, held-out, all, clean")
    parser.add_argument("--configs", default="none,paper", help=f"comma-separated, from {sorted(CONFIGS)}")
    parser.add_argument("--grid", help='hyper-parameter axes, e.g. "stage1Epochs=2,4,8;lambda1=0,10"')
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--data-dir", type=Path, default=FASHION_MNIST_DIR)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--no-render", action="store_true", help="run the cells, leave bench/EFFICACY.md as it is")
    args = parser.parse_args()
    root = OUT / args.profile
    if not args.render_only:
        p = PROFILES[args.profile]
        clean = prepare_clean(root, p["train"], p["test"], args.data_dir)
        for attack in attack_list(args.attacks):
            data = prepare_attack(root, clean, attack)
            for seed in (int(s) for s in args.seeds.split(",")):
                for config in args.configs.split(","):
                    for overrides in parse_grid(args.grid):
                        cell = cell_spec(args.profile, attack, config, overrides, seed)
                        record = run_cell(root, cell, data, p["device"])
                        r = record["result"]
                        verdict = (record["health"] or {}).get("verdict")
                        print(f"{attack:13s} {config:18s} {json.dumps(overrides):28s} seed {seed}: ASR {fmt(r.get('asr'))} CA {fmt(r.get('ca'))} "
                              f"health {verdict} ({record['wallSeconds']:.0f} s)", flush=True)
    if args.no_render:
        return
    from render import render  # noqa: PLC0415  (bench/efficacy/render.py)

    render(root, args.profile, EFFICACY_MD)


def fmt(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
