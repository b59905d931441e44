"""Fashion-MNIST, poisoned 10 %: no defense vs Trap and Replace, per attack (the paper's Table 11 layout).

Data: the Debian package dataset-fashion-mnist. Holdout = the last 5 % of the (possibly
subsampled) training set, never poisoned. Poisoning goes through the trainer's `poison` command
and training through its `run` command, the same contract the service uses.

    python bench/fmnist/run.py --preset quick     # what `make run` shows: one attack, minutes on 2 cores
    python bench/fmnist/run.py --preset table     # the CPU table in bench/RESULTS.md (< 30 min on 2 cores)
    python bench/fmnist/run.py --preset gpu       # full size, on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, replace_section, trainer  # noqa: E402

from trapdoor_trainer.data import write_canonical  # noqa: E402
from trapdoor_trainer.defenses.tnr import HYPERPARAMETERS as TNR_HP  # noqa: E402
from trapdoor_trainer.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist  # noqa: E402

# Each method's main-phase settings for a budget of E epochs (the no-defense / T&R stage-1 epochs).
# Post-training methods start from the same attack's no-defense model (data.initModel).
METHOD_SETTINGS = {
    "NO_DEFENSE": lambda e, s2: {"epochs": e},
    "TRAP_AND_REPLACE": lambda e, s2: {"stage1Epochs": e, "stage2Epochs": s2},
    "FINE_PRUNING": lambda e, s2: {"epochs": s2},
    "NAD": lambda e, s2: {"teacherEpochs": max(1, s2 // 2), "epochs": s2},
    "I_BAU": lambda e, s2: {"epochs": 3},
    "ANP": lambda e, s2: {"maskIterations": 200},
    "ABL": lambda e, s2: {"epochs": max(1, e // 2), "finetuneEpochs": max(1, e // 2), "unlearnEpochs": 2},
    "DP_SGD": lambda e, s2: {"epochs": e},
}
POST_TRAINING = {"FINE_PRUNING", "NAD", "I_BAU", "ANP"}
SHORT = {"NO_DEFENSE": "none", "TRAP_AND_REPLACE": "T&R", "FINE_PRUNING": "FP", "NAD": "NAD", "I_BAU": "I-BAU", "ANP": "ANP", "ABL": "ABL", "DP_SGD": "DP"}
PRESETS = {
    "quick": {"attacks": ["badnet_grid"], "train": 8000, "test": 2000, "epochs": 4, "stage2Epochs": 10, "device": "auto"},
    "table": {"attacks": ["badnet_grid", "blend", "l2_invisible", "sig", "trojan_wm"], "train": 12000, "test": 10000, "epochs": 4, "stage2Epochs": 10, "device": "auto"},
    # small-cnn: on 2 CPU cores WRN-16-1 cannot learn the backdoors in the time a 9-method table allows.
    "baselines": {"attacks": ["badnet_grid", "blend", "l2_invisible"], "train": 12000, "test": 10000, "epochs": 10, "stage2Epochs": 10, "device": "auto", "architecture": "small-cnn",
                  "methods": list(METHOD_SETTINGS), "clean": ["NO_DEFENSE", "TRAP_AND_REPLACE", "ABL", "I_BAU"]},
    "gpu": {"attacks": ["badnet_grid", "blend", "l2_invisible", "sig", "trojan_wm"], "train": 60000, "test": 10000, "epochs": 10, "stage2Epochs": 10, "device": "cuda"},
}
HOLDOUT_FRACTION = 0.05
POISON_RATIO = 0.10  # of the full training set, as in the paper
TARGET = 0


def prepare_clean(root: Path, n_train: int, n_test: int, data_dir: Path) -> dict:
    data = load_fashion_mnist(data_dir)
    train_x, train_y = data["train"][0][:n_train], data["train"][1][:n_train]
    test_x, test_y = data["test"][0][:n_test], data["test"][1][:n_test]
    n_holdout = int(HOLDOUT_FRACTION * len(train_y))
    split = len(train_y) - n_holdout
    paths = {name: root / name for name in ("train_clean", "holdout", "test")}
    write_canonical(paths["train_clean"], train_x[:split], train_y[:split], num_classes=10, class_names=FASHION_MNIST_CLASSES)
    write_canonical(paths["holdout"], train_x[split:], train_y[split:], num_classes=10, class_names=FASHION_MNIST_CLASSES)
    write_canonical(paths["test"], test_x, test_y, num_classes=10, class_names=FASHION_MNIST_CLASSES)
    target_share = float((train_y[:split] == TARGET).mean())
    return {"paths": paths, "train": split, "holdout": n_holdout, "test": len(test_y), "full": len(train_y), "targetShare": target_share}


def poison_ratio(attack: str, clean: dict) -> float:
    """10 % of the full training set, all placed in the train split; a clean-label attack (SIG, LCBA)
    can only poison the target class, so it gets the whole class, which the trainer used to reach by
    capping and now must be asked for (it refuses a ratio beyond the class)."""
    from trapdoor_trainer.attacks.registry import get_attack

    ratio = POISON_RATIO * clean["full"] / clean["train"]
    return min(ratio, clean["targetShare"]) if get_attack(attack).clean_label else ratio


def run_method(root: Path, name: str, spec: dict) -> dict:
    spec_path = root / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()

    def show(event: dict) -> None:
        if event["type"] == "progress" and event["step"] == event["steps"]:
            print(f"    {name} {event['stage']} epoch {event['epoch'] + 1}/{event['epochs']} {event['imagesPerSecond']:.0f} img/s", flush=True)

    events = trainer("run", "--spec", str(spec_path), "--workdir", str(root / name), stream_to=show)
    result = next(e for e in events if e["type"] == "result")
    result["wallSeconds"] = time.perf_counter() - started
    return result


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--attacks", help="comma-separated attack names (overrides the preset)")
    parser.add_argument("--epochs", type=int, help="no-defense epochs = T&R stage-1 epochs")
    parser.add_argument("--stage2-epochs", type=int)
    parser.add_argument("--train", type=int, help="images taken from the 60 000 training images")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--data-dir", type=Path, default=FASHION_MNIST_DIR, help="directory with the four IDX .gz files")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "fmnist")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--render-only", action="store_true", help="rebuild the every-method table from results.json of an earlier (possibly partial) run")
    parser.add_argument("--methods", help="comma-separated methods (default: the preset's; NO_DEFENSE always runs first)")
    args = parser.parse_args()
    cfg = dict(PRESETS[args.preset])
    for key in ("epochs", "train", "device"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.stage2_epochs is not None:
        cfg["stage2Epochs"] = args.stage2_epochs
    if args.attacks:
        cfg["attacks"] = args.attacks.split(",")
    if args.methods:
        cfg["methods"] = ["NO_DEFENSE"] + [m for m in args.methods.split(",") if m != "NO_DEFENSE"]
    if "methods" in cfg:
        if args.render_only:
            rows = json.loads((args.out / args.preset / "results.json").read_text())
            n_holdout = int(HOLDOUT_FRACTION * cfg["train"])
            return render_methods_table(args, cfg, rows, cfg["train"] - n_holdout, n_holdout, cfg["test"], None)
        return run_methods_table(args, cfg)

    started = time.perf_counter()
    root = args.out / args.preset
    clean = prepare_clean(root, cfg["train"], cfg["test"], args.data_dir)
    paths = clean["paths"]
    print(f"Fashion-MNIST: train {clean['train']}, holdout {clean['holdout']}, test {clean['test']}; attacks {cfg['attacks']}", flush=True)
    rows, device_name = [], None
    for attack in cfg["attacks"]:
        adir = root / attack
        poison_spec = {
            "source": str(paths["train_clean"]), "test": str(paths["test"]), "seed": 0,
            "attack": {"name": attack, "target": TARGET},
            "ratio": poison_ratio(attack, clean),
        }
        (adir).mkdir(parents=True, exist_ok=True)
        (adir / "poison.json").write_text(json.dumps(poison_spec))
        trainer("poison", "--spec", str(adir / "poison.json"), "--out", str(adir / "train"), "--asr-out", str(adir / "asr"))
        data = {"train": str(adir / "train"), "holdout": str(paths["holdout"]), "test": str(paths["test"]), "asrTest": str(adir / "asr")}
        common = {"architecture": "wrn16-1", "data": data, "target": TARGET, "seed": 0, "device": cfg["device"]}
        print(f"  {attack}", flush=True)
        none = run_method(adir, "none", {**common, "method": "NO_DEFENSE", "hyperparameters": {"epochs": cfg["epochs"], "evalEvery": 0}})
        tnr = run_method(adir, "tnr", {**common, "method": "TRAP_AND_REPLACE", "hyperparameters": {"stage1Epochs": cfg["epochs"], "stage2Epochs": cfg["stage2Epochs"], "evalEvery": 0}})
        device_name = tnr["device"]["name"]
        rows.append({"attack": attack, "none": none, "tnr": tnr})
        (root / "results.json").write_text(json.dumps(rows, indent=2))  # partial results survive an interrupted run
        print(f"  {attack}: no defense ASR {pct(none['asr'])} CA {pct(none['ca'])} | T&R ASR {pct(tnr['asr'])} CA {pct(tnr['ca'])} (trapped head ASR {pct(tnr['stage1Asr'])})", flush=True)
    wall = time.perf_counter() - started

    lines = [
        f"### Fashion-MNIST, preset `{args.preset}` ({time.strftime('%Y-%m-%d')}, {device_name}, {platform.machine()})",
        "",
        f"Command: `python bench/fmnist/run.py {' '.join(sys.argv[1:])}`. WRN-16-1, poison ratio 10 % of the training set, target {TARGET} ({FASHION_MNIST_CLASSES[TARGET]}),",
        f"train {clean['train']} / holdout {clean['holdout']} (last 5 %) / test {clean['test']} images; no-defense {cfg['epochs']} epochs,",
        f"T&R stage 1 {cfg['epochs']} epochs + stage 2 {cfg['stage2Epochs']} epochs (stage-2 paper recipe; trainer defaults: {tnr_defaults()}). Total wall time {wall / 60:.1f} min.",
        "",
        "| Attack | No defense ASR % | No defense CA % | T&R ASR % | T&R CA % | T&R MSE | trapped head ASR % | wall s (none / T&R) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n, t = r["none"], r["tnr"]
        lines.append(f"| {r['attack']} | {pct(n['asr'])} | {pct(n['ca'])} | {pct(t['asr'])} | {pct(t['ca'])} | {t['mse']:.4f} | {pct(t['stage1Asr'])} | {n['wallSeconds']:.0f} / {t['wallSeconds']:.0f} |")
    mean = lambda key, field: sum(r[key][field] for r in rows) / len(rows)  # noqa: E731
    lines.append(f"| **mean** | {pct(mean('none', 'asr'))} | {pct(mean('none', 'ca'))} | {pct(mean('tnr', 'asr'))} | {pct(mean('tnr', 'ca'))} | | {pct(mean('tnr', 'stage1Asr'))} | |")
    table = "\n".join(lines)
    print("\n" + table)
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    if not args.no_record:
        replace_section(f"fmnist-{args.preset}", table)


def tnr_defaults() -> str:
    """The T&R defaults a table was made with (they move as bench/EFFICACY.md chooses them)."""
    return ", ".join(f"{name} {TNR_HP[name].default}" for name in ("lambda1", "lambda2", "isolateFraction", "stemCeScale", "stemEndBlock"))


def run_methods_table(args, cfg: dict) -> None:
    """Every method per attack, plus a clean-data row (no poisoning) like the paper's Table 10."""
    started = time.perf_counter()
    root = args.out / args.preset
    clean = prepare_clean(root, cfg["train"], cfg["test"], args.data_dir)
    paths = clean["paths"]
    methods = cfg["methods"]
    print(f"Fashion-MNIST: train {clean['train']}, holdout {clean['holdout']}, test {clean['test']}; methods {methods}", flush=True)
    rows = []
    for attack in cfg["attacks"] + ["(clean data)"]:
        adir = root / attack.strip("()").replace(" ", "_")
        adir.mkdir(parents=True, exist_ok=True)
        data = {"train": str(paths["train_clean"]), "holdout": str(paths["holdout"]), "test": str(paths["test"])}
        row_methods = cfg.get("clean", methods) if attack.startswith("(") else methods
        if not attack.startswith("("):
            poison_spec = {"source": str(paths["train_clean"]), "test": str(paths["test"]), "seed": 0, "attack": {"name": attack, "target": TARGET}, "ratio": poison_ratio(attack, clean)}
            (adir / "poison.json").write_text(json.dumps(poison_spec))
            trainer("poison", "--spec", str(adir / "poison.json"), "--out", str(adir / "train"), "--asr-out", str(adir / "asr"))
            data.update(train=str(adir / "train"), asrTest=str(adir / "asr"))
        row = {"attack": attack, "results": {}}
        for method in row_methods:
            spec_data = dict(data)
            if method in POST_TRAINING:
                spec_data["initModel"] = str(adir / "NO_DEFENSE")
            spec = {"architecture": cfg.get("architecture", "wrn16-1"), "data": spec_data, "target": TARGET, "seed": 0, "device": cfg["device"], "method": method,
                    "hyperparameters": {**METHOD_SETTINGS[method](cfg["epochs"], cfg["stage2Epochs"]), "evalEvery": 0}}
            result = run_method(adir, method, spec)
            row["results"][method] = result
            print(f"  {attack} {method}: ASR {pct(result['asr'])} CA {pct(result['ca'])} ({result['wallSeconds']:.0f} s)", flush=True)
        rows.append(row)
        (root / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    render_methods_table(args, cfg, rows, clean["train"], clean["holdout"], clean["test"], time.perf_counter() - started)


def render_methods_table(args, cfg: dict, rows: list, n_train: int, n_holdout: int, n_test: int, wall: float | None) -> None:
    methods = cfg["methods"]
    header = "| Attack | " + " | ".join(f"{SHORT[m]} ASR / CA %" for m in methods) + " |"
    lines = [
        f"### Fashion-MNIST, every method, preset `{args.preset}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {rows[0]['results']['NO_DEFENSE']['device']['name']})",
        "",
        f"Command: `python bench/fmnist/run.py --preset {args.preset}`. {cfg.get('architecture', 'wrn16-1')}, poison ratio 10 %, target {TARGET}; train {n_train} / holdout {n_holdout} / test {n_test} images.",
        f"Budget E = {cfg['epochs']} epochs: " + "; ".join(f"{SHORT[m]} {METHOD_SETTINGS[m](cfg['epochs'], cfg['stage2Epochs'])}" for m in methods)
        + ". FP, NAD, I-BAU and ANP start from that attack's no-defense model. Reduced CPU budgets: compare methods with each other, not with the paper.",
        (f"Total wall time {wall / 60:.1f} min" if wall is not None else "Rendered from a partial run (--render-only)")
        + f"; per-run wall seconds are in `bench/out/fmnist/{args.preset}/results.json`.",
        "",
        header,
        "|---|" + "---|" * len(methods),
    ]
    for r in rows:
        cells = []
        for m in methods:
            res = r["results"].get(m)
            cells.append("–" if res is None else f"{pct(res['asr'])} / {pct(res['ca'])}")
        lines.append(f"| {r['attack']} | " + " | ".join(cells) + " |")
    attacked = [r for r in rows if not r["attack"].startswith("(")]
    means = []
    for m in methods:
        asrs = [r["results"][m]["asr"] for r in attacked if m in r["results"]]
        cas = [r["results"][m]["ca"] for r in attacked if m in r["results"]]
        means.append(f"{pct(sum(asrs) / len(asrs))} / {pct(sum(cas) / len(cas))}" if asrs else "–")
    lines.append("| **mean over attacks** | " + " | ".join(means) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    if not args.no_record:
        replace_section(f"fmnist-{args.preset}", table)


if __name__ == "__main__":
    main()
