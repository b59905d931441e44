"""The health verdict's calibration, out of sample (issue 15, item 4), from the committed cells.

health.py's thresholds (VERDICT) were fitted on the development attacks at the study's ratio and
on clean data, seed 0. Every other committed T&R cell whose health report came from the default's
isolation trap measures them: clean data on other seeds, the held-out attacks, other poison ratios
and another target. The verdict is re-derived from each cell's stored evidence with health.judge,
so the figures are those of the thresholds in the code today. Writes the `efficacy-calibration-<profile>`
table of bench/EFFICACY.md and the `calibration` section every T&R health report carries
(trainer/trapdoor_trainer/defenses/health_calibration.json); `--check` fails when that file is not
what the committed cells give (the trainer's tests run it).

    python3 bench/efficacy/calibrate.py --profile cpu
    python3 bench/efficacy/calibrate.py --profile cpu --check
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, load_bench_module, replace_section  # noqa: E402
from trapdoor_trainer.defenses.health import CALIBRATION_FILE, FLAG_RATIO, VERDICT, judge  # noqa: E402

committed = load_bench_module("efficacy/committed.py")
run = load_bench_module("efficacy/run.py")

# Overrides that leave the isolation pass (trap, probe, ranking) as the default runs it: the report
# reads that pass alone, so these cells measure the default's verdict.
SAME_ISOLATION = {"stage1Epochs", "stage2Epochs", "stage2TrainShare", "stage2TrainPick", "isolateSizingRule", *committed.RULE_KEYS}
CONFIGS = ("default", "default-fixed", "evidence")  # differ only in what isolation drops after the verdict
LOW_SHARE = 0.05  # poison under 5 % of the training split is reported apart: the verdict is not built for it
UNDER_5 = "under 5 %"
SOURCE = 'bench/EFFICACY.md, "The health verdict, out of sample"'


def measured_cells(records: list[dict]) -> list[dict]:
    """One record per (attack, seed): T&R cells whose report came from the default's isolation pass."""
    chosen: dict = {}
    for r in records:
        cell = r["cell"]
        if cell["config"] not in CONFIGS or not r.get("health") or r["health"]["evidence"].get("rankingSource") not in (None, "isolation"):
            continue
        if not set(cell["overrides"]) <= SAME_ISOLATION | {"isolateEpochs"} or committed.isolation_epochs(cell["hyperparameters"]) != committed.ISOLATE_EPOCHS_BOUND:
            continue
        key = (cell["attack"], cell["seed"])
        if key not in chosen or len(cell["overrides"]) < len(chosen[key]["cell"]["overrides"]):
            chosen[key] = r
    return sorted(chosen.values(), key=lambda r: (r["cell"]["attack"] != run.CLEAN, r["cell"]["attack"], r["cell"]["seed"]))


def poison_share_of_split(attack: str) -> float:
    """The poisoned share of the training split (a clean-label attack poisons a share of its ~10 % target class)."""
    text, ratio = committed.poison_share(attack)
    return ratio * 0.1 if text.endswith("class") else ratio


def case(r: dict) -> dict:
    """A cell as a calibration case: truth, the verdict today's thresholds give, and its group."""
    cell, evidence = r["cell"], r["health"]["evidence"]
    candidate, verdict, lift = judge(evidence["flaggedShare"], evidence["labelExcess"], evidence["overPrediction"])
    clean = cell["attack"] == run.CLEAN
    parsed = None if clean else run.parse_attack(cell["attack"])
    study = not clean and not committed.is_variant(cell["attack"])
    fit = cell["seed"] == 0 and (clean or (study and parsed["name"] in run.DEV))
    if fit:
        group = "fit"
    elif clean:
        group = "clean data, other seeds"
    elif study:
        group = "development attacks, other seeds" if parsed["name"] in run.DEV else "held-out attacks" if parsed["name"] in run.HELD_OUT else "adaptive attack (LBA)"
    else:
        group = "other ratios and targets, " + UNDER_5 if poison_share_of_split(cell["attack"]) < LOW_SHARE else "other ratios and targets, 5 % and over"
    return {
        "attack": cell["attack"], "seed": cell["seed"], "group": group, "poisoned": not clean, "target": None if clean else parsed["target"],
        "verdict": verdict, "candidate": candidate, "lift": lift, "flagged": evidence["flaggedShare"][candidate], "labelExcess": evidence["labelExcess"][candidate],
        "skew": max(max(evidence["labelExcess"]), max(evidence["overPrediction"])), "share": None if clean else committed.poison_share(cell["attack"])[0],
    }


def rate(hits: int, total: int) -> dict:
    return {"rate": None if total == 0 else round(hits / total, 4), "count": hits, "of": total}


def summarise(cases: list[dict]) -> dict:
    """Out-of-sample rates over `cases` (the fit cases excluded by the caller). A miss is a poisoned
    set not called poisoned (`inconclusive` counts: a platform acting on `poisoned` would not act)."""
    clean = [c for c in cases if not c["poisoned"]]
    poisoned = [c for c in cases if c["poisoned"]]
    called = [c for c in poisoned if c["verdict"] == "poisoned"]
    return {
        "falsePositiveRate": rate(sum(c["verdict"] == "poisoned" for c in clean), len(clean)),
        "cleanCalledClean": rate(sum(c["verdict"] == "clean" for c in clean), len(clean)),
        "falseNegativeRate": rate(len(poisoned) - len(called), len(poisoned)),
        "poisonedCalledClean": rate(sum(c["verdict"] == "clean" for c in poisoned), len(poisoned)),
        "likelyTargetAccuracy": rate(sum(c["candidate"] == c["target"] for c in called), len(called)),
    }


def counted(cases: list[dict]) -> dict:
    """summarise() with the number of cells it read."""
    return {"cells": len(cases), **summarise(cases)}


def calibration(cases: list[dict], profile: str) -> dict:
    """The report's `calibration` section: what the thresholds were fitted on, and their error rates out of sample."""
    measured = [c for c in cases if c["group"] != "fit"]
    fit = [c for c in cases if c["group"] == "fit"]
    groups = sorted({c["group"] for c in measured})
    return {
        "dataset": f"Fashion-MNIST, efficacy profile `{profile}` (15 200 training / 800 holdout images, WRN-16-1, 6-epoch isolation trap)",
        "appliesTo": "T&R reports ranked by the isolation pass (isolateFraction > 0); not the scan's shorter trap",
        "thresholds": {"flagRatio": FLAG_RATIO, **VERDICT},
        "fitOn": sorted(f"{c['attack']} seed {c['seed']}" for c in fit),
        "fitErrors": sum((c["verdict"] == "poisoned") != c["poisoned"] for c in fit),
        "outOfSample": counted(measured),
        "outOfSampleAtLeast5Percent": counted([c for c in measured if not c["group"].endswith(UNDER_5)]),
        "groups": [{"name": g, **counted([c for c in measured if c["group"] == g])} for g in groups],
        "source": SOURCE,
    }


def fmt(r: dict) -> str:
    return "–" if r["of"] == 0 else f"{100 * r['rate']:.0f} % ({r['count']}/{r['of']})"


def render(cases: list[dict], cal: dict) -> str:
    lines = committed.table_head(
        f"Verdicts re-derived from each committed cell's evidence with today's thresholds `{json.dumps(cal['thresholds'])}`. "
        "A miss: a poisoned set not called `poisoned` (`inconclusive` included).",
        ["cells", "n", "false positives (clean called poisoned)", "clean called clean", "missed (poisoned not called poisoned)", "poisoned called clean", "likely target right"],
    )
    rows = [("fit (thresholds chosen here)", counted([c for c in cases if c["group"] == "fit"])), *((g["name"], g) for g in cal["groups"]),
            ("**all out of sample**", cal["outOfSample"]), ("**out of sample, poison ≥ 5 % of the split**", cal["outOfSampleAtLeast5Percent"])]
    for name, s in rows:
        lines.append(f"| {name} | {s['cells']} | {fmt(s['falsePositiveRate'])} | {fmt(s['cleanCalledClean'])} | {fmt(s['falseNegativeRate'])} | "
                     f"{fmt(s['poisonedCalledClean'])} | {fmt(s['likelyTargetAccuracy'])} |")
    lines += ["", "Per cell (the evidence at the candidate class: flagged share, lift, label excess; skew = the largest label excess or over-prediction):", "",
              "| group | attack | poisoned | seed | verdict | candidate | flagged | lift | label excess | skew |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cases, key=lambda c: (c["group"] != "fit", c["group"], c["attack"], c["seed"])):
        lines.append(f"| {c['group']} | {c['attack']} | {c['share'] or '–'} | {c['seed']} | {c['verdict']} | {c['candidate']} | {c['flagged']:.3f} | {c['lift']:.1f} | {c['labelExcess']:.2f} | {c['skew']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--check", action="store_true", help="fail when the trainer's calibration file is not what the committed cells give")
    args = parser.parse_args()
    cases = [case(r) for r in measured_cells(committed.load(args.profile))]
    cal = calibration(cases, args.profile)
    text = json.dumps(cal, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        if not CALIBRATION_FILE.exists() or CALIBRATION_FILE.read_text() != text:
            sys.exit(f"{CALIBRATION_FILE.relative_to(REPO)} is stale: run python3 bench/efficacy/calibrate.py --profile {args.profile}")
        return
    CALIBRATION_FILE.write_text(text)
    replace_section(f"efficacy-calibration-{args.profile}", render(cases, cal), committed.EFFICACY_MD)


if __name__ == "__main__":
    main()
