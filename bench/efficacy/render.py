"""Turn the cached cells of bench/efficacy/run.py into bench/EFFICACY.md tables and PNG plots.

Only the generated block between the `efficacy-<profile>` markers is rewritten; the hand-written
analysis around it stays.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import replace_section  # noqa: E402

DEV = ["badnet_grid", "blend", "sig"]
HELD_OUT = ["badnet_white", "l0_invisible", "l2_invisible", "smooth", "trojan_sq", "trojan_wm", "lcba"]


def load_cells(root: Path) -> list[dict]:
    """Every cached cell, its health verdict re-derived from the stored evidence with the
    trainer's current thresholds (cells computed before a threshold change stay comparable)."""
    from trapdoor_trainer.defenses.health import judge

    cells = [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*.json"))]
    for c in cells:
        h = c.get("health")
        if h:
            e = h["evidence"]
            candidate, h["verdict"], _ = judge(e["flaggedShare"], e["labelExcess"], e["overPrediction"])
            h["likelyTarget"] = candidate if h["verdict"] == "poisoned" else None
    return cells


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def group(cells: list[dict]) -> dict:
    """(attack, config, overrides-as-json) -> cells over seeds."""
    out = defaultdict(list)
    for c in cells:
        cell = c["cell"]
        out[(cell["attack"], cell["config"], json.dumps(cell.get("overrides", {}), sort_keys=True))].append(c)
    return out


def avg(records: list[dict], field: str):
    values = [r["result"].get(field) for r in records if r["result"].get(field) is not None]
    return mean(values) if values else None


def spread(records: list[dict]) -> str:
    """Seed count and the range of ASR and CA over the seeds."""
    def span(field):
        values = [r["result"][field] for r in records if r["result"].get(field) is not None]
        return f"{pct(min(values))}–{pct(max(values))}" if values else None

    parts = [f"n={len(records)}"] + [f"{name} {s}" for name, s in (("ASR", span("asr")), ("CA", span("ca"))) if s]
    return ", ".join(parts)


def main_table(groups: dict, configs: list[str]) -> list[str]:
    attacks = [a for a in DEV + HELD_OUT + ["clean"] if any(k[0] == a for k in groups)]
    header = "| Attack | set | " + " | ".join(f"{c} ASR / CA %" for c in configs) + " | health verdict (" + configs[-1] + ") |"
    lines = [header, "|---|---|" + "---|" * (len(configs) + 1)]
    sums = defaultdict(lambda: defaultdict(list))
    for attack in attacks:
        role = "dev" if attack in DEV else ("held-out" if attack in HELD_OUT else "no attack")
        cells = []
        for config in configs:
            recs = groups.get((attack, config, "{}"), [])
            asr, ca = avg(recs, "asr"), avg(recs, "ca")
            cells.append("–" if not recs else f"{pct(asr)} / {pct(ca)}" + (f" ({spread(recs)})" if len(recs) > 1 else ""))
            if recs and attack != "clean":
                sums[role][config].append((asr, ca))
                sums["all"][config].append((asr, ca))
        last = groups.get((attack, configs[-1], "{}"), [])
        verdicts = ", ".join(sorted({(r.get("health") or {}).get("verdict") or "–" for r in last})) or "–"
        lines.append(f"| {attack} | {role} | " + " | ".join(cells) + f" | {verdicts} |")
    for role in ("dev", "held-out", "all"):
        row = []
        for config in configs:
            pairs = sums[role][config]
            asrs = [a for a, _ in pairs if a is not None]
            row.append(f"{pct(mean(asrs)) if asrs else '–'} / {pct(mean(c for _, c in pairs)) if pairs else '–'}"
                       + (f" (max ASR {pct(max(asrs))}, {len(pairs)} attacks)" if asrs else ""))
        lines.append(f"| **mean, {role}** | | " + " | ".join(row) + " | |")
    return lines


def isolation_table(groups: dict) -> list[str]:
    rows = [(k, v) for k, v in groups.items() if any(r["result"].get("isolatedCount") for r in v)]
    if not rows:
        return []
    lines = ["", "Isolation (isolate-and-retrain) against the poison mask:", "",
             "| Attack | config | overrides | isolated | precision | recall | trapped-head ASR % | health verdict / likely target |", "|---|---|---|---|---|---|---|---|"]
    for (attack, config, overrides), recs in sorted(rows):
        r = recs[0]["result"]
        h = recs[0].get("health") or {}
        lines.append(f"| {attack} | {config} | {overrides} | {r.get('isolatedCount')} | {pct(r.get('isolationPrecision'))} | {pct(r.get('isolationRecall'))} | "
                     f"{pct(r.get('stage1Asr'))} | {h.get('verdict')} / {h.get('likelyTarget')} |")
    return lines


def base_value(cell: dict, axis: str):
    """The value an unswept cell ran with on `axis` (NO_DEFENSE's epoch budget is stage1Epochs)."""
    from trapdoor_trainer.defenses.tnr import HYPERPARAMETERS
    from trapdoor_trainer.hyperparams import COMMON

    hp = cell["hyperparameters"]
    if cell["method"] == "NO_DEFENSE":
        return hp.get("epochs") if axis == "stage1Epochs" else None
    if axis in hp:
        return hp[axis]
    table = {**COMMON, **HYPERPARAMETERS}
    return table[axis].default if axis in table else None


def grid_tables(groups: dict) -> tuple[list[str], dict]:
    """One table per swept axis: ASR / CA per attack and axis value. The unswept cells of the same
    (attack, config) join the sweep at the value they ran with (the profile's or trainer's default)."""
    axes = defaultdict(lambda: defaultdict(dict))  # axis -> (attack, config) -> value -> recs
    for (attack, config, overrides), recs in groups.items():
        o = json.loads(overrides)
        if len(o) == 1:
            (axis, value), = o.items()
            axes[axis][(attack, config)][value] = recs
    for axis, series in axes.items():
        for (attack, config), by_value in series.items():
            recs = groups.get((attack, config, "{}"))
            if recs:
                value = base_value(recs[0]["cell"], axis)
                if value is not None:
                    by_value.setdefault(value, recs)
    lines = []
    for axis, series in sorted(axes.items()):
        values = sorted({v for s in series.values() for v in s}, key=lambda v: (v is None, v))
        lines += ["", f"Sweep over `{axis}` (ASR / CA %, trapped-head ASR in brackets; means over seeds):", "",
                  "| Attack | config | " + " | ".join(str(v) for v in values) + " |", "|---|---|" + "---|" * len(values)]
        for (attack, config), by_value in sorted(series.items()):
            cells = []
            for v in values:
                recs = by_value.get(v)
                cells.append("–" if not recs else f"{pct(avg(recs, 'asr'))} / {pct(avg(recs, 'ca'))}"
                             + ("" if config == "none" else f" [{pct(avg(recs, 'stage1Asr'))}]"))
            lines.append(f"| {attack} | {config} | " + " | ".join(cells) + " |")
    return lines, axes


def plots(axes: dict, out_dir: Path) -> list[str]:
    """ASR and CA against each swept axis, one line per (attack, config); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["", "(plots skipped: matplotlib is not installed)"]
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for axis, series in sorted(axes.items()):
        fig, (ax_asr, ax_ca) = plt.subplots(1, 2, figsize=(10, 4))
        for (attack, config), by_value in sorted(series.items()):
            xs = sorted(v for v in by_value if v is not None)
            if len(xs) < 2:
                continue
            ax_asr.plot(xs, [100 * avg(by_value[x], "asr") for x in xs], marker="o", label=f"{attack} {config}")
            ax_ca.plot(xs, [100 * avg(by_value[x], "ca") for x in xs], marker="o", label=f"{attack} {config}")
        for ax, name in ((ax_asr, "ASR %"), (ax_ca, "CA %")):
            ax.set_xlabel(axis)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        ax_asr.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"sweep-{axis}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        lines.append(f"![{axis}]({path.relative_to(out_dir.parent)})")
    return lines


def render(root: Path, profile: str, md_path: Path) -> None:
    cells = load_cells(root)
    if not cells:
        print("no cells yet")
        return
    groups = group(cells)
    configs = [c for c in ("none", "paper", "official-s2", "stem-ce-0.1", "trap-first", "isolate-trap-first", "isolate", "default") if any(k[1] == c and k[2] == "{}" for k in groups)]
    cell0 = cells[0]["cell"]
    lines = [f"### Profile `{profile}` ({len(cells)} cells)", "",
             f"Rendered by `python bench/efficacy/run.py --profile {profile} --render-only`. Means over seeds; dev attacks chose the defaults, held-out attacks only measure.", ""]
    lines += main_table(groups, configs) + isolation_table(groups)
    grid_lines, axes = grid_tables(groups)
    lines += grid_lines
    lines += [""] + plots(axes, md_path.parent / "efficacy-plots" / profile)
    total = sum(c["wallSeconds"] for c in cells if not c.get("sameRunAs"))  # a run listed under two names counts once
    lines += ["", f"Compute: {total / 60:.0f} min over {len(cells)} cells (first cell's spec: {json.dumps(cell0['hyperparameters'])})."]
    replace_section(f"efficacy-{profile}", "\n".join(lines), md_path)
    print("\n".join(lines))
