"""Issue-15 item 0: the service's default T&R at longer stage-1 runs than the study validated
(6 epochs). Reads the committed cells in bench/efficacy/cells/<profile>/ (copies of
bench/efficacy/run.py's cache, so the table can be re-rendered and checked without rerunning)
and writes the `efficacy-epochs-<profile>` block of bench/EFFICACY.md.

    python3 bench/efficacy/run.py --profile cpu --attacks dev --configs default --grid "stage1Epochs=30" --no-render
    cp bench/out/efficacy/cpu/cells/*.json bench/efficacy/cells/cpu/
    python3 bench/efficacy/epochs.py --profile cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, replace_section  # noqa: E402

CELLS = REPO / "bench" / "efficacy" / "cells"
EFFICACY_MD = REPO / "bench" / "EFFICACY.md"
ASR_TARGET = 0.05  # item 0: the default must hold ASR <= 5 % at every epoch count a user may pick


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def render(profile: str) -> str:
    records = [json.loads(p.read_text()) for p in sorted((CELLS / profile).glob("*.json"))]
    rows = [r for r in records if r["cell"]["config"] == "default"]
    rows.sort(key=lambda r: (r["cell"]["attack"], r["cell"]["hyperparameters"].get("stage1Epochs", 0), json.dumps(r["cell"]["overrides"], sort_keys=True)))
    lines = [
        f"Committed cells: `bench/efficacy/cells/{profile}/` ({len(records)}). Rendered by `python3 bench/efficacy/epochs.py --profile {profile}`.",
        "",
        "| attack | overrides | stage-1 epochs | isolation epochs | isolation recall % | ASR % | CA % | trapped head ASR % | ASR ≤ 5 % | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hp, res = r["cell"]["hyperparameters"], r["result"]
        isolate = hp.get("isolateEpochs") or hp.get("stage1Epochs")
        ok = "yes" if res.get("asr") is not None and res["asr"] <= ASR_TARGET else "**no**"
        lines.append(
            f"| {r['cell']['attack']} | `{json.dumps(r['cell']['overrides'], sort_keys=True)}` | {hp.get('stage1Epochs')} | {isolate} | {pct(res.get('isolationRecall'))} "
            f"| {pct(res.get('asr'))} | {pct(res.get('ca'))} "
            f"| {pct(res.get('stage1Asr'))} | {ok} | {r['wallSeconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    replace_section(f"efficacy-epochs-{args.profile}", render(args.profile), EFFICACY_MD)


if __name__ == "__main__":
    main()
