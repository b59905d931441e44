"""Tables of bench/EFFICACY.md rendered from the committed cells in bench/efficacy/cells/<profile>/
(copies of bench/efficacy/run.py's cache, so every figure can be re-rendered and checked without
rerunning): `efficacy-epochs-<profile>`, the default at longer stage-1 runs (issue 15, item 0),
`efficacy-cost-<profile>`, what the default and its variants cost in clean accuracy (item 1),
`efficacy-ratios-<profile>`, other poison ratios and targets (item 2), `efficacy-study-<profile>`,
the ten attacks under today's default, `efficacy-adaptive-<profile>`, LBA-n (item 6), and
`efficacy-baselines-<profile>`, every attack against the six baselines on their published recipes (item 3).

    python3 bench/efficacy/run.py --profile cpu --attacks dev --configs default --grid "stage1Epochs=30" --no-render
    cp bench/out/efficacy/cpu/cells/*.json bench/efficacy/cells/cpu/
    python3 bench/efficacy/committed.py --profile cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, load_bench_module, replace_section  # noqa: E402
from trapdoor_trainer.attacks.registry import get_attack  # noqa: E402
from trapdoor_trainer.defenses.tnr import CANDIDATE_LEFT_OUT, ISOLATE_EPOCHS_BOUND  # noqa: E402

run = load_bench_module("efficacy/run.py")
parse_attack = run.parse_attack

CELLS = REPO / "bench" / "efficacy" / "cells"
EFFICACY_MD = REPO / "bench" / "EFFICACY.md"
ASR_TARGET = 0.05  # item 0: the default must hold ASR <= 5 % at every epoch count a user may pick


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def der(none: dict | None, defended: dict) -> float | None:
    """BackdoorBench's defense effectiveness rating, in points: [max(0, ASR drop) - max(0, CA drop) + 100] / 2."""
    if none is None or none.get("asr") is None or defended.get("asr") is None:
        return None
    return (max(0.0, none["asr"] - defended["asr"]) - max(0.0, none["ca"] - defended["ca"]) + 1.0) / 2


def against_no_defense(none: dict | None, res: dict) -> tuple[str, str, str]:
    """The no-defense cell's ASR / CA, the CA cost and DER, as table cells ("–" where no cell ran)."""
    if none is None:
        return "–", "–", "–"
    rating = der(none, res)
    return f"{pct(none.get('asr'))} / {pct(none['ca'])}", f"{100 * (none['ca'] - res['ca']):.1f}", "–" if rating is None else f"{100 * rating:.1f}"


def score(none: dict, res: dict) -> tuple:
    """(ASR, CA cost, DER) of a defended result against its no-defense cell, for the means."""
    return res["asr"], none["ca"] - res["ca"], der(none, res)


EPOCH_KEYS = ("stage1Epochs", "isolateEpochs")  # a longer run's overrides: the default as long as it says


def epochs_of(r: dict) -> int:
    """A cell's training length: T&R's stage-1 epochs, a baseline's or no defense's epochs."""
    hp = r["cell"]["hyperparameters"]
    return hp.get("stage1Epochs", hp.get("epochs"))


def isolation_epochs(hp: dict) -> int:
    """What the trainer ran (defenses/tnr.py isolation_epochs): cells that ran before the bound
    carry their isolateEpochs explicitly."""
    return hp.get("isolateEpochs") or min(hp["stage1Epochs"], ISOLATE_EPOCHS_BOUND)


def table_head(intro: str, columns: list[str]) -> list[str]:
    """A table's introduction line, a blank line, and its Markdown header."""
    return [intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


# What a cell ran for an option its hyper-parameters do not name: the trainer's behaviour before the
# option existed (run.py's configurations name every default the study has changed since).
BEFORE_OPTION = {"isolateSizing": "fixed", "stage1WhenPoisoned": "all", "stage1WhenNotPoisoned": "all", "stage2Overlay": 0.0, "stage2OverlayWhen": "always", "stage2WhenPoisoned": "holdout", "stage2TargetWeight": 1.0,
                 "stage2WhenNotPoisoned": "holdout", "stage2CandidateWeight": 1.0}


def ran_hyperparameters(hp: dict) -> dict:
    """A cell's hyper-parameters with the options it does not name as they ran (BEFORE_OPTION)."""
    return {**BEFORE_OPTION, **hp}


def isolation_sizing(hp: dict) -> str:
    """Cells that ran before isolateSizing existed ran "fixed" (the top isolateFraction, always)."""
    return ran_hyperparameters(hp)["isolateSizing"]


def isolation(r: dict) -> str:
    """How isolation was sized and what it dropped; "evidence" also says what the isolation's
    evidence called the set."""
    res = r["result"]
    sizing = isolation_sizing(r["cell"]["hyperparameters"])
    verdict = f" ({res['isolationVerdict']})" if res.get("isolationVerdict") else ""
    return f"{sizing}{verdict}: {res.get('isolatedCount', '–')}"


def is_variant(attack: str) -> bool:
    """An attack cell at another ratio or target than the study's (`blend@0.05`, `blend#3`)."""
    return any(mark in attack for mark in "@#")


def load(profile: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((CELLS / profile).glob("*.json"))]


def no_defense(records: list[dict]) -> dict:
    """(attack, epochs, seed) -> the no-defense cell's result."""
    return {(r["cell"]["attack"], r["cell"]["hyperparameters"]["epochs"], r["cell"]["seed"]): r["result"] for r in records if r["cell"]["config"] == "none"}


RULE_KEYS = ("stage1WhenPoisoned", "stage1WhenNotPoisoned", "stage2Overlay", "stage2OverlayWhen", "stage2WhenPoisoned", "stage2TargetWeight", "stage2WhenNotPoisoned", "stage2CandidateWeight")  # shown in their own column, not as overrides


def hp_rules(hp: dict) -> tuple[str, str]:
    """(the rule on a set called poisoned, the rule on any other set): stage 2's `holdout`,
    `off-target ×w` (the likely target's weight), `off-candidate ×w`, `plausible-off-candidate ×w` (the candidate's weight), or
    another rule's name (`probe-plausible`; `probe-agreed`, since removed), and on a set called poisoned
    `+ stage-1 off-target` where stage 1's classification loss left the likely target out (on any
    other set `+ stage-1 off-candidate`, the candidate class), and `+ overlay s` where stage 2
    overlaid images (stage2Overlay: on a set called poisoned, and with stage2OverlayWhen always on
    any other; cells from before that option overlaid on every set). Cells
    that do not name an option ran before it existed (BEFORE_OPTION)."""
    hp = ran_hyperparameters(hp)
    poisoned = "holdout" if hp["stage2WhenPoisoned"] == "holdout" else f"off-target ×{hp['stage2TargetWeight']:g}"
    if hp["stage1WhenPoisoned"] == "off-target":
        poisoned += " + stage-1 off-target"
    rule = hp["stage2WhenNotPoisoned"]
    other = f"{rule} ×{hp['stage2CandidateWeight']:g}" if rule in CANDIDATE_LEFT_OUT else rule
    if hp["stage1WhenNotPoisoned"] == "off-candidate":
        other += " + stage-1 off-candidate"
    if hp["stage2Overlay"] > 0:
        poisoned += f" + overlay {hp['stage2Overlay']:g}"
        if hp["stage2OverlayWhen"] == "always":
            other += f" + overlay {hp['stage2Overlay']:g}"
    return poisoned, other


def asked(cell: dict, ignored: tuple[str, ...] = ()) -> dict:
    """A cell's overrides beyond the rules (RULE_KEYS, shown in their own column) and `ignored`."""
    return {k: v for k, v in cell["overrides"].items() if k not in (*RULE_KEYS, *ignored)}


def rules_label(rules: tuple[str, str]) -> str:
    return rules[0] if rules[0] == rules[1] else f"{rules[0]}; else {rules[1]}"


def stage2_label(r: dict) -> str:
    """The stage-2 rule that applied to a cell: the poisoned-set rule where isolation called its set
    poisoned, the other one elsewhere (isolation runs before stage 2, so the verdict does not
    depend on either)."""
    poisoned, other = hp_rules(r["cell"]["hyperparameters"])
    return poisoned if r["result"].get("isolationVerdict") == "poisoned" else other


def ran_rules(r: dict, rules: tuple[str, str]) -> bool:
    """Whether a cell's new head trained as a default with `rules` would have trained it on that set."""
    return stage2_label(r) == (rules[0] if r["result"].get("isolationVerdict") == "poisoned" else rules[1])


def render_epochs(records: list[dict], profile: str, epochs: int) -> str:
    """Item 0: the default on the development attacks at more stage-1 epochs than the study's."""
    baseline = no_defense(records)
    rows = [r for r in records if r["cell"]["config"] == "default" and not asked(r["cell"], EPOCH_KEYS)
            and r["cell"]["hyperparameters"]["stage1Epochs"] > epochs]
    rows.sort(key=lambda r: (r["cell"]["attack"], r["cell"]["hyperparameters"]["stage1Epochs"], r["cell"]["seed"], -isolation_epochs(r["cell"]["hyperparameters"])))
    lines = [
        f"Committed cells: `bench/efficacy/cells/{profile}/` ({len(records)}). Rendered by `python3 bench/efficacy/committed.py --profile {profile}`.",
        f"No defense (same attack, epochs and seed) gives CA cost and DER where its cell exists; isolation at {ISOLATE_EPOCHS_BOUND} epochs is the new default,",
        "isolation as long as stage 1 the old one.",
        "",
        "| attack | seed | stage-1 epochs | isolation epochs | the rule that applied | isolation: dropped | isolation recall % | trapped head ASR % | ASR % | CA % | no defense ASR / CA % | CA cost | DER | ASR ≤ 5 % | wall s (threads) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cell, hp, res = r["cell"], r["cell"]["hyperparameters"], r["result"]
        none = baseline.get((cell["attack"], hp["stage1Epochs"], cell["seed"]))
        ok = "–" if res.get("asr") is None else "yes" if res["asr"] <= ASR_TARGET else "**no**"
        threads = (res.get("device") or {}).get("threads", "?")
        plain, cost, rating = against_no_defense(none, res)
        lines.append(
            f"| {cell['attack']} | {cell['seed']} | {hp['stage1Epochs']} | {isolation_epochs(hp)} | {stage2_label(r)} | {isolation(r)} | {pct(res.get('isolationRecall'))} | {pct(res.get('stage1Asr'))} "
            f"| {pct(res.get('asr'))} | {pct(res.get('ca'))} | {plain} | {cost} | {rating} | {ok} | {r['wallSeconds']:.0f} ({threads}) |"
        )
    return "\n".join(lines)


def render_cost(records: list[dict], profile: str, epochs: int) -> str:
    """At the study's epochs, per variant of the default (its overrides) and attack: ASR / CA, the
    stage-1 network's CA (stem + trapped head, before stage 2), CA cost and DER against no defense."""
    baseline = no_defense(records)
    cells = [r for r in records if r["cell"]["config"] in ("default", "evidence") and r["cell"]["hyperparameters"]["stage1Epochs"] == epochs
             and r["cell"]["attack"] in (*run.DEV, run.CLEAN)  # other ratios and targets: render_ratios; other attacks: render_study
             and (r["cell"]["attack"], epochs, r["cell"]["seed"]) in baseline]

    def variant(r: dict) -> str:
        return json.dumps(asked(r["cell"], EPOCH_KEYS), sort_keys=True)

    cells.sort(key=lambda r: (isolation_sizing(r["cell"]["hyperparameters"]) != "fixed", variant(r) != "{}", variant(r), stage2_label(r), r["cell"]["attack"] == "clean", r["cell"]["attack"], r["cell"]["seed"]))
    lines = table_head(
        f"{epochs} stage-1 epochs; no defense from the committed cell with the same attack and seed. Cost: CA points below no defense. "
        "Stage-2 data: what the new head trained on besides the 800 holdout images (poisoned among them).",
        ["variant of the default", "the rule that applied", "isolation: dropped", "attack", "seed", "no defense ASR / CA %", "ASR / CA %", "stage-1 CA %", "cost", "DER", "stage-2 data"],
    )
    for r in cells:
        cell, res = r["cell"], r["result"]
        none = baseline.get((cell["attack"], epochs, cell["seed"]))
        added = f"{res['stage2TrainCount']} ({res.get('stage2TrainPoisoned', '–')})" if "stage2TrainCount" in res else "–"
        plain, cost, rating = against_no_defense(none, res)
        lines.append(
            f"| `{variant(r)}` | {stage2_label(r)} | {isolation(r)} | {cell['attack']} | {cell['seed']} | {plain} | {pct(res.get('asr'))} / {pct(res['ca'])} | {pct(res.get('stage1Ca'))} | {cost} | {rating} | {added} |"
        )
    return "\n".join(lines)


def poison_share(attack: str) -> tuple[str, float]:
    """(how much of what was poisoned, a sort key) for an attack cell's name: plain names are the
    study's 10 % (a clean-label attack: its whole target class)."""
    parsed = parse_attack(attack)
    whole = "of the target class" if get_attack(parsed["name"]).clean_label else "of the training split"
    ratio = parsed["ratio"] if parsed["ratio"] is not None else (1.0 if whole.endswith("class") else 0.105)
    return f"{100 * ratio:g} % {whole}", ratio


# Item 2's rows: no defense, the T&R sizings tried, then the best baselines of item 3.
RATIO_BASELINES = ("nad", "fp")
RATIO_CONFIGS = ("none", "default", "default-fixed", "evidence") + RATIO_BASELINES


def render_ratios(records: list[dict], profile: str, epochs: int) -> str:
    """Item 2: the default (and the sizings tried) against no defense at other poison ratios and
    another target class, at the study's epochs, seed 0."""
    baseline = no_defense(records)
    varied = {r["cell"]["attack"] for r in records if is_variant(r["cell"]["attack"])}
    studied = {parse_attack(a)["name"] for a in varied}

    def shown(r: dict) -> bool:
        cell = r["cell"]
        if cell["seed"] != 0 or cell["config"] not in RATIO_CONFIGS:
            return False
        if cell["config"] in RATIO_BASELINES:  # at today's recipe, at every ratio including the study's
            return (cell["attack"] in varied or cell["attack"] in studied) and r in baseline_cells(records, cell["attack"], cell["config"], epochs)
        # The study's own attacks: the default's cells, the one asking for today's stage-2 rule too;
        # other ratios and targets: every stage-2 rule tried (the config column names it)
        todays = not cell["overrides"] or (not asked(cell) and (ran_rules(r, TODAY) or cell["attack"] in varied))
        return epochs_of(r) == epochs and (cell["attack"] in varied or (cell["attack"] in studied and cell["config"] != "none" and todays))

    cells = [r for r in records if shown(r)]
    cells.sort(key=lambda r: (parse_attack(r["cell"]["attack"])["name"], parse_attack(r["cell"]["attack"])["target"], poison_share(r["cell"]["attack"])[1],
                              RATIO_CONFIGS.index(r["cell"]["config"]), json.dumps(r["cell"]["overrides"], sort_keys=True)))
    lines = table_head(
        f"{epochs} stage-1 epochs, seed 0, target 0 unless said; no defense from the committed cell with the same attack name. "
        "`default` sizes isolation by `grow`, `default-fixed` by `fixed`, `evidence` by `evidence`; on a set called poisoned `grow` and `evidence` do the same. "
        "NAD and FP (the baselines with the best mean DER on the ten attacks, and the cheapest) on their published recipes defend the no-defense cell's model.",
        ["attack", "poisoned", "target", "config (overrides)", "isolation: dropped", "recall %", "ASR / CA %", "no defense ASR / CA %", "CA cost", "DER"],
    )
    for r in cells:
        cell, res = r["cell"], r["result"]
        parsed = parse_attack(cell["attack"])
        none = None if cell["config"] == "none" else baseline.get((cell["attack"], epochs, 0))
        plain, cost, rating = against_no_defense(none, res)
        overrides = asked(cell)
        shows_overrides = overrides and cell["config"] not in RATIO_BASELINES  # a baseline's are today's recipe
        config = cell["config"] + (f" `{json.dumps(overrides, sort_keys=True)}`" if shows_overrides else "")
        config += f", stage 2 {stage2_label(r)}" if cell["method"] == "TRAP_AND_REPLACE" else ""
        dropped = isolation(r) if cell["method"] == "TRAP_AND_REPLACE" else "–"
        lines.append(
            f"| {parsed['name']} | {poison_share(cell['attack'])[0]} | {parsed['target']} | {config} | {dropped} | {pct(res.get('isolationRecall'))} "
            f"| {pct(res.get('asr'))} / {pct(res['ca'])} | {plain} | {cost} | {rating} |"
        )
    return "\n".join(lines)


# Today's default rules (run.py's `default` configuration names them), and the rules shown beside
# them in the ten-attack table: the default's before round five, the weight first chosen, the
# default's before round eight (stage 1 learning every kept sample's label) and before round nine
# (stage 2 without the overlay, the holdout head on sets not called poisoned).
TODAY = hp_rules(run.CONFIGS["default"])
HOLDOUT_HEAD = "holdout head (before round five)"
EVERY_LABEL = "stage 1 on every label (before round eight)"
NO_OVERLAY = "no overlay (before round nine)"
REPLACED = {HOLDOUT_HEAD: ("holdout", "holdout"), "off-target ×0.5": ("off-target ×0.5", "holdout"), EVERY_LABEL: ("off-target ×0.25", "holdout"),
            NO_OVERLAY: ("off-target ×0.25 + stage-1 off-target", "holdout")}
STAND_INS = (NO_OVERLAY, EVERY_LABEL)  # where a seed has no cell with today's rules, the latest earlier default that has one


def default_cell(records: list[dict], attack: str, epochs: int, seed: int = 0, rule: tuple[str, str] = TODAY) -> dict | None:
    """The default's cell for `attack` and `seed` at `epochs` stage-1 epochs (its isolation trap at
    the default's bound), its new head trained by
    `rule` (hp_rules) on the set it ran on, however the cell asked for it; an
    `evidence` cell stands in where its set was called poisoned (the two sizings then drop the same samples)."""
    def plain(r: dict, config: str) -> bool:
        cell, hp = r["cell"], r["cell"]["hyperparameters"]
        return (cell["attack"] == attack and cell["config"] == config and cell["seed"] == seed and not asked(cell, EPOCH_KEYS)
                and hp["stage1Epochs"] == epochs and isolation_epochs(hp) == min(epochs, ISOLATE_EPOCHS_BOUND) and ran_rules(r, rule))

    found = [r for r in records if plain(r, "default")] or [r for r in records if plain(r, "evidence") and r["result"].get("isolationVerdict") == "poisoned"]
    return found[0] if found else None


def todays_cell(records: list[dict], attack: str, epochs: int, seed: int = 0) -> tuple[dict | None, bool]:
    """(today's default's cell, or where `seed` has none the latest earlier default's (STAND_INS)
    that has one; whether it is such a stand-in)."""
    r = default_cell(records, attack, epochs, seed)
    if r is not None:
        return r, False
    for label in STAND_INS:
        r = default_cell(records, attack, epochs, seed, rule=REPLACED[label])
        if r is not None:
            return r, True
    return None, False


def defended_rows(records: list[dict], attacks: list[tuple[str, str]], epochs: int, rule: tuple[str, str] = TODAY, others: tuple[tuple[str, str], ...] = ()) -> tuple[list[str], list[tuple]]:
    """Table rows (attack, what it is, no defense, [the default with each of the `others` stage-2
    rules,] default, isolation, verdict, cost, DER) and, per row with a no-defense cell, (group,
    ASR, CA cost, DER, the same or None for each of the others) for the means."""
    baseline = no_defense(records)
    lines, measured = [], []
    for attack, group in attacks:
        r = default_cell(records, attack, epochs, rule=rule)
        olds = [default_cell(records, attack, epochs, rule=other) for other in others]
        if r is None and not any(olds):
            continue
        none = baseline.get((attack, epochs, 0))
        before = ""
        for old in olds:
            text = f"{pct(old['result'].get('asr'))} / {pct(old['result']['ca'])}" if old else "–"
            before += f" {text}{' (evidence)' if old and old['cell']['config'] == 'evidence' else ''} |"
        if r is None:  # not run with today's default (yet): the other rules' figures alone
            plain = f"{pct(none.get('asr'))} / {pct(none['ca'])}" if none else "–"
            lines.append(f"| {attack} | {group} | {plain} |{before} – | – | – | – | – | – | – |")
        else:
            res, health = r["result"], r.get("health") or {}
            plain, cost, rating = against_no_defense(none, res)
            target = f" → {health['likelyTarget']}" if health.get("likelyTarget") is not None else ""
            stand_in = " (evidence)" if r["cell"]["config"] == "evidence" else ""
            lines.append(f"| {attack} | {group} | {plain} |{before} {pct(res.get('asr'))} / {pct(res['ca'])}{stand_in} | {isolation(r)} | {pct(res.get('isolationRecall'))} "
                         f"| {pct(res.get('stage1Asr'))} | {health.get('verdict', '–')}{target} | {cost} | {rating} |")
        if none is not None:
            then = [score(none, old["result"]) if old else None for old in olds]
            today = score(none, r["result"]) if r else (None, None, None)
            measured.append((group, *today, then))
    return lines, measured


def mean_rows(measured: list[tuple], groups: list[str], others: int = 0) -> list[str]:
    """Mean rows under a defended table; with `others` columns of other stage-2 rules before the
    default's, their means too (each over the attacks it ran)."""
    lines = []
    for name in groups:
        rows = [m for m in measured if name == "all" or m[0] == name]
        before = ""
        for i in range(others):
            then = [m[4][i] for m in rows if m[4][i] is not None]
            before += (f" {pct(sum(t[0] for t in then) / len(then))} (max {pct(max(t[0] for t in then))}), cost {100 * sum(t[1] for t in then) / len(then):.1f}, "
                       f"DER {100 * sum(t[2] for t in then) / len(then):.1f} ({len(then)}) |") if then else " |"
        ran = [m for m in rows if m[1] is not None]
        if ran:
            lines.append(f"| **mean, {name}** ({len(ran)}) | | |{before} {pct(sum(m[1] for m in ran) / len(ran))} (max {pct(max(m[1] for m in ran))}) | | | | "
                         f"| {100 * sum(m[2] for m in ran) / len(ran):.1f} | {100 * sum(m[3] for m in ran) / len(ran):.1f} |")
        elif rows:
            lines.append(f"| **mean, {name}** (0) | | |{before} – | | | | | | |")
    return lines


DEFENDED_COLUMNS = ["attack", "set", "no defense ASR / CA %", "default ASR / CA %", "isolation: dropped", "recall %", "trapped head ASR %", "verdict", "CA cost", "DER"]


def render_study(records: list[dict], profile: str, epochs: int) -> str:
    """The ten attacks of the study under today's default, seed 0, from committed cells, beside
    the default with the stage-2 rules it replaced."""
    attacks = [(a, "dev") for a in run.DEV] + [(a, "held-out") for a in run.HELD_OUT]
    columns = DEFENDED_COLUMNS[:3] + [f"{label} ASR / CA %" for label in REPLACED] + [f"default ({rules_label(TODAY)}) ASR / CA %"] + DEFENDED_COLUMNS[4:]
    lines = table_head(f"{epochs} stage-1 epochs, seed 0, 10 % poison (clean-label: the whole target class), target 0; no defense from the committed cell "
                       "with the same attack; cost and DER are the default's. `(evidence)`: the evidence-sized cell, the same rule on a set called poisoned.", columns)
    rows, measured = defended_rows(records, attacks, epochs, others=tuple(REPLACED.values()))
    return "\n".join(lines + rows + mean_rows(measured, ["dev", "held-out", "all"], others=len(REPLACED)))


def render_seeds(records: list[dict], profile: str, epochs: int) -> str:
    """Item 1's measure: CA cost (mean over seeds 0-2) and ASR of today's default on the development
    attacks and on clean data, per seed, against the same seed's no-defense cell."""
    baseline = no_defense(records)
    lines = table_head(f"{epochs} stage-1 epochs, 10 % poison, target 0; default = today's rules ({rules_label(TODAY)}), or where a seed has no "
                       "such cell the latest earlier default that has one (the rule column says which); no defense from the committed cell with the same attack and seed.",
                       ["attack", "seed", "no defense ASR / CA %", "default ASR / CA %", "verdict", "the rule that applied", "CA cost", "DER"])
    groups: dict[str, list[tuple]] = {}
    for attack in (*run.DEV, run.CLEAN):
        for seed in (0, 1, 2):
            # Where today's rules have no cell on a seed, an earlier default's stands in (its rule column says so).
            r, none = todays_cell(records, attack, epochs, seed)[0], baseline.get((attack, epochs, seed))
            if r is None or none is None:
                continue
            res = r["result"]
            plain, cost, rating = against_no_defense(none, res)
            lines.append(f"| {attack} | {seed} | {plain} | {pct(res.get('asr'))} / {pct(res['ca'])} | {res.get('isolationVerdict', '–')} | {stage2_label(r)} | {cost} | {rating} |")
            groups.setdefault("clean data" if attack == run.CLEAN else "development attacks", []).append(score(none, res))
    for name, scored in groups.items():
        asr = [m[0] for m in scored if m[0] is not None]
        asr_text = f"{pct(sum(asr) / len(asr))} (max {pct(max(asr))})" if asr else "–"
        lines.append(f"| **mean, {name}** ({len(scored)}) | | | ASR {asr_text} | | | {100 * sum(m[1] for m in scored) / len(scored):.1f} | |")
    return "\n".join(lines)


def render_adaptive(records: list[dict], profile: str, epochs: int) -> str:
    """Item 6: LBA-n (the trigger optimised against a surrogate's layer-n features) against today's
    default and the default before round five (the new head on the holdout alone), at every
    stage-1 length an LBA cell ran."""
    def setting(attack: str) -> tuple[str, int]:
        params = parse_attack(attack)["params"]
        return params.get("surrogateArchitecture", "small-cnn"), params.get("layer", 14)

    lba = [r for r in records if parse_attack(r["cell"]["attack"])["name"] == "lba"]
    names = sorted({r["cell"]["attack"] for r in lba}, key=setting)
    lengths = sorted({epochs_of(r) for r in lba})
    before = {label: REPLACED[label] for label in (HOLDOUT_HEAD, EVERY_LABEL)}
    columns = DEFENDED_COLUMNS[:3] + [f"{label} ASR / CA %" for label in before] + [f"default ({rules_label(TODAY)}) ASR / CA %"] + DEFENDED_COLUMNS[4:]
    lines = table_head("Seed 0, 10 % poison, target 0, the attack's other parameters at their defaults (a 5 px patch, 200 Adam steps, the surrogate "
                       "trained 5 epochs on the clean split); the set column gives the stage-1 epochs; cost and DER are today's default's.", columns)
    for length in lengths:
        attacks = [(a, "LBA-{1}, {0} surrogate, {2} epochs".format(*setting(a), length)) for a in names]
        rows, measured = defended_rows(records, attacks, length, others=tuple(before.values()))
        lines += rows + mean_rows([(f"{length} epochs", *m[1:]) for m in measured], [f"{length} epochs"], others=len(before))
    return "\n".join(lines)


BASELINES = [("fp", "FP"), ("nad", "NAD"), ("ibau", "I-BAU"), ("anp", "ANP"), ("abl", "ABL"), ("dp-sgd", "DP-SGD")]


def baseline_cells(records: list[dict], attack: str, config: str, epochs: int) -> list[dict]:
    """A method's cells for `attack` at the study's budget, one per seed: those that ran the
    configuration's hyper-parameters as run.py names them today, however the cell asked for them
    (NAD's rates were first a grid override)."""
    return [r for r in records if r["cell"]["attack"] == attack and r["cell"]["config"] == config
            and r["cell"]["hyperparameters"] == run.cell_spec(r["cell"]["profile"], attack, config, {"stage1Epochs": epochs}, r["cell"]["seed"])["hyperparameters"]]


def method_summary(cells: list[dict], baseline: dict, epochs: int) -> tuple[str, dict[int, tuple[float, float, float]]]:
    """"ASR / CA (DER)" over the seeds a method ran, and per seed (ASR, CA cost, DER) against the
    same seed's committed no-defense cell."""
    per_seed = {}
    for r in cells:
        none = baseline.get((r["cell"]["attack"], epochs, r["cell"]["seed"]))
        if none is not None and r["result"].get("asr") is not None:
            per_seed[r["cell"]["seed"]] = score(none, r["result"])
    scored = list(per_seed.values())
    if not cells:
        return "–", per_seed
    asr = [r["result"]["asr"] for r in cells]
    ca = [r["result"]["ca"] for r in cells]
    rating = f" ({100 * sum(s[2] for s in scored) / len(scored):.1f})" if scored else ""
    seeds = f" n={len(cells)}" if len(cells) > 1 else ""
    epsilon = cells[0]["result"].get("epsilon")
    privacy = f", ε {epsilon:.1f}" if epsilon is not None else ""
    return f"{pct(sum(asr) / len(asr))} / {pct(sum(ca) / len(ca))}{rating}{seeds}{privacy}", per_seed


def render_baselines(records: list[dict], profile: str, epochs: int) -> str:
    """Item 3: every attack x {none, the default, the six baselines on their published recipes}."""
    baseline = no_defense(records)
    methods = [("default", "T&R default")] + BASELINES
    lines = table_head(
        f"ASR / CA % (DER), {epochs}-epoch no-defense budget, 10 % poison, target 0; seed 0 unless `n=` says how many seeds (0, 1) the figures average. "
        "FP, NAD, I-BAU and ANP defend the no-defense model of the same attack and seed; DER against the committed no-defense cell. "
        "The best baseline and the means compare methods on the seeds the T&R default ran (a seed's DER grows with the backdoor its no-defense run planted). "
        "†: on some seed an earlier T&R default (before round nine or eight: the seeds table's rule column), where today's has no cell.",
        ["attack", "set", "no defense"] + [name for _, name in methods] + ["best baseline by DER"],
    )
    scores: dict[tuple[str, str], list] = {}
    for attack, group in [(a, "dev") for a in run.DEV] + [(a, "held-out") for a in run.HELD_OUT]:
        if not any(baseline_cells(records, attack, config, epochs) for config, _ in BASELINES):
            continue
        nones = [r for r in records if r["cell"]["config"] == "none" and r["cell"]["attack"] == attack and r["cell"]["hyperparameters"]["epochs"] == epochs]
        none_text = method_summary(nones, {}, epochs)[0] if nones else "–"
        row, ratings, compared = [], {}, None
        for config, name in methods:
            stood_in = False
            if config == "default":
                found = [todays_cell(records, attack, epochs, seed) for seed in sorted({r["cell"]["seed"] for r in nones})]
                cells, stood_in = [c for c, _ in found], any(stand_in for _, stand_in in found)
            else:
                cells = baseline_cells(records, attack, config, epochs)
            cells = [c for c in cells if c is not None]
            text, per_seed = method_summary(cells, baseline, epochs)
            text += " †" if stood_in else ""
            row.append(text)
            if config == "default" and per_seed:
                compared = set(per_seed)
            scored = [v for seed, v in per_seed.items() if compared is None or seed in compared]
            if scored:
                scores.setdefault((group, config), []).append(tuple(sum(x[i] for x in scored) / len(scored) for i in range(3)))
                ratings[name] = sum(x[2] for x in scored) / len(scored)
        best = max(((v, k) for k, v in ratings.items() if k != "T&R default"), default=None)
        beats = "" if best is None or "T&R default" not in ratings else (" (beats T&R)" if best[0] > ratings["T&R default"] else "")
        lines.append(f"| {attack} | {group} | {none_text} | " + " | ".join(row) + f" | {best[1] if best else '–'}{beats} |")
    groups = {g for g, _ in scores}
    for group in ["dev", "held-out"] + (["all"] if len(groups) > 1 else []):
        cells = []
        for config, _ in methods:
            rows = [m for (g, c), ms in scores.items() if c == config and (group == "all" or g == group) for m in ms]
            cells.append(f"ASR {pct(sum(m[0] for m in rows) / len(rows))}, cost {100 * sum(m[1] for m in rows) / len(rows):.1f}, DER {100 * sum(m[2] for m in rows) / len(rows):.1f} ({len(rows)})" if rows else "–")
        if any(c != "–" for c in cells[1:]):
            lines.append(f"| **mean, {group}** | | | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--epochs", type=int, default=6, help="stage-1 epochs of the cost table (the study's)")
    args = parser.parse_args()
    records = load(args.profile)
    replace_section(f"efficacy-epochs-{args.profile}", render_epochs(records, args.profile, args.epochs), EFFICACY_MD)
    replace_section(f"efficacy-cost-{args.profile}", render_cost(records, args.profile, args.epochs), EFFICACY_MD)
    replace_section(f"efficacy-ratios-{args.profile}", render_ratios(records, args.profile, args.epochs), EFFICACY_MD)
    replace_section(f"efficacy-seeds-{args.profile}", render_seeds(records, args.profile, args.epochs), EFFICACY_MD)
    replace_section(f"efficacy-study-{args.profile}", render_study(records, args.profile, args.epochs), EFFICACY_MD)
    replace_section(f"efficacy-adaptive-{args.profile}", render_adaptive(records, args.profile, args.epochs), EFFICACY_MD)
    replace_section(f"efficacy-baselines-{args.profile}", render_baselines(records, args.profile, args.epochs), EFFICACY_MD)


if __name__ == "__main__":
    main()
