"""How reliable is scanDataset's verdict, and what does it cost against a default T&R run?

    python3 bench/efficacy/scan.py --profile cpu                       # both budgets, every attack, 5 clean seeds
    python3 bench/efficacy/scan.py --profile cpu --budgets scan-fast   # one budget
    python3 bench/efficacy/scan.py --profile cpu --render-only

Runs SCAN cells through bench/efficacy/run.py's cache (same data, attacks and target), plus one
default T&R cell on the same clean data for the time ratio, and writes the `efficacy-scan-<profile>`
block of bench/EFFICACY.md. The verdict's thresholds were fitted on the development attacks and
clean seed 0 of the T&R study (defenses/health.py); here they are measured on 5 clean seeds, the
development attacks and the seven held-out attacks, once per budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import load_bench_module, replace_section  # noqa: E402

_run = load_bench_module("efficacy/run.py")
BUDGETS = ("scan-fast", "scan-thorough")
REFERENCE = "default"  # the T&R cell the scan's time is compared with


def run_all(profile: str, attacks: list[str], clean_seeds: list[int], budgets: list[str]) -> None:
    root = _run.OUT / profile
    p = _run.PROFILES[profile]
    clean = _run.prepare_clean(root, p["train"], p["test"], _run.FASHION_MNIST_DIR)
    plan = [(attack, seed) for seed in clean_seeds for attack in [_run.CLEAN]] + [(a, 0) for a in attacks]
    for budget in budgets:
        for attack, seed in plan:
            cell = _run.cell_spec(profile, attack, budget, {}, seed)
            record = _run.run_cell(root, cell, _run.prepare_attack(root, clean, attack), p["device"])
            h = record["health"]
            print(f"{budget:14s} {attack:13s} seed {seed}: {h['verdict']:12s} target {h['likelyTarget']} ({record['wallSeconds']:.0f} s)", flush=True)
        if budget == budgets[0]:  # the reference once, after the first budget has its figures
            cell = _run.cell_spec(profile, _run.CLEAN, REFERENCE, {}, 0)
            record = _run.run_cell(root, cell, _run.prepare_attack(root, clean, _run.CLEAN), p["device"])
            print(f"T&R default clean seed 0: {record['wallSeconds']:.0f} s", flush=True)


def timing(profile: str, repeats: int) -> str:
    """Wall times of a default T&R run and of each budget's scan on the clean set, run one after
    another here (nothing cached, nothing else should share the machine), `repeats` times."""
    import shutil
    import tempfile

    root = _run.OUT / profile
    p = _run.PROFILES[profile]
    clean = _run.prepare_clean(root, p["train"], p["test"], _run.FASHION_MNIST_DIR)
    data = _run.prepare_attack(root, clean, _run.CLEAN)
    seconds: dict[str, list[float]] = {REFERENCE: [], **{b: [] for b in BUDGETS}}
    for _ in range(repeats):
        for config in seconds:
            cell = _run.cell_spec(profile, _run.CLEAN, config, {}, 0)
            scratch = Path(tempfile.mkdtemp(prefix="scan-timing-"))
            try:
                seconds[config].append(_run.run_cell(scratch, cell, data, p["device"])["wallSeconds"])
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            print(f"{config}: {seconds[config][-1]:.0f} s", flush=True)
    ref = sum(seconds[REFERENCE]) / repeats
    lines = ["| run | wall time (mean of %d) | share of the default T&R run |" % repeats, "|---|---|---|",
             f"| default T&R ({p['stage1Epochs']} + {p['stage2Epochs']} epochs, isolation on) | {ref:.0f} s | 100 % |"]
    for budget in BUDGETS:
        mean = sum(seconds[budget]) / repeats
        lines.append(f"| scan {budget.removeprefix('scan-').upper()} | {mean:.0f} s | {100 * mean / ref:.0f} % |")
    return "\n".join(lines)


def pct(part: int, whole: int) -> str:
    return "–" if whole == 0 else f"{100 * part / whole:.0f} % ({part}/{whole})"


def render(profile: str) -> str:
    root = _run.OUT / profile
    records = [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*.json"))]
    reference = [r for r in records if r["cell"]["config"] == REFERENCE and r["cell"]["attack"] == _run.CLEAN and not r["cell"]["overrides"]]
    ref_seconds = reference[0]["wallSeconds"] if reference else None
    lines = [
        "| budget | trap epochs | false positives on clean data (verdict `poisoned`) | clean data called `clean` | missed, development attacks (not `poisoned`) | missed, held-out attacks | likely target right | wall time | share of a default T&R run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for budget in BUDGETS:
        cells = [r for r in records if r["cell"]["config"] == budget]
        if not cells:
            continue
        clean = [r for r in cells if r["cell"]["attack"] == _run.CLEAN]
        dev = [r for r in cells if r["cell"]["attack"] in _run.DEV]
        held = [r for r in cells if r["cell"]["attack"] in _run.HELD_OUT]
        poisoned_calls = [r for r in dev + held if r["health"]["verdict"] == "poisoned"]
        seconds = sum(r["wallSeconds"] for r in cells) / len(cells)
        share = "–" if ref_seconds is None else f"{100 * seconds / ref_seconds:.0f} %"
        lines.append(
            f"| {budget.removeprefix('scan-').upper()} | {cells[0]['result']['trapEpochs']} "
            f"| {pct(sum(r['health']['verdict'] == 'poisoned' for r in clean), len(clean))} "
            f"| {pct(sum(r['health']['verdict'] == 'clean' for r in clean), len(clean))} "
            f"| {pct(sum(r['health']['verdict'] != 'poisoned' for r in dev), len(dev))} "
            f"| {pct(sum(r['health']['verdict'] != 'poisoned' for r in held), len(held))} "
            f"| {pct(sum(r['health']['likelyTarget'] == _run.TARGET for r in poisoned_calls), len(poisoned_calls))} "
            f"| {seconds:.0f} s | {share} |"
        )
    lines += ["", "Per cell (verdict, likely target):", "", "| attack | seed | " + " | ".join(b.removeprefix("scan-").upper() for b in BUDGETS) + " |", "|---|---|---|---|"]
    keys = sorted({(r["cell"]["attack"], r["cell"]["seed"]) for r in records if r["cell"]["config"] in BUDGETS}, key=lambda k: (k[0] != _run.CLEAN, k))
    for attack, seed in keys:
        row = []
        for budget in BUDGETS:
            match = [r for r in records if r["cell"]["config"] == budget and r["cell"]["attack"] == attack and r["cell"]["seed"] == seed]
            h = match[0]["health"] if match else None
            row.append("–" if h is None else f"{h['verdict']}" + (f" → {h['likelyTarget']}" if h["likelyTarget"] is not None else ""))
        group = "dev" if attack in _run.DEV else "held out" if attack in _run.HELD_OUT else "no poison"
        lines.append(f"| {attack} ({group}) | {seed} | " + " | ".join(row) + " |")
    if ref_seconds is not None:
        lines += ["", f"Reference: the default T&R cell on the clean set, seed 0, {ref_seconds:.0f} s wall time on the same machine and data."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", choices=sorted(_run.PROFILES), default="cpu")
    parser.add_argument("--attacks", default="dev,held-out")
    parser.add_argument("--clean-seeds", default="0,1,2,3,4")
    parser.add_argument("--budgets", default=",".join(BUDGETS))
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--timing", type=int, metavar="N", help="only time the reference and both budgets, N times each, on a quiet machine")
    args = parser.parse_args()
    if args.timing:
        text = timing(args.profile, args.timing)
        replace_section(f"efficacy-scan-timing-{args.profile}", text, _run.EFFICACY_MD)
        print(text)
        return
    if not args.render_only:
        run_all(args.profile, _run.attack_list(args.attacks), [int(s) for s in args.clean_seeds.split(",")], args.budgets.split(","))
    text = render(args.profile)
    replace_section(f"efficacy-scan-{args.profile}", text, _run.EFFICACY_MD)
    print(text)


if __name__ == "__main__":
    main()
