"""Offline checks behind stage2WhenNotPoisoned's probe rules (issue 15, item 1, eleventh round).

`view`: run isolation alone (the 6-epoch trap whose stem only reconstructs, and the probe head
fitted on the holdout) for one attack and seed, as T&R's default runs it, and print how many of the
poisoned samples isolation kept each probe rule would hand to stage 2, per threshold; the per-sample
view is saved for `heads`:

    python3 bench/efficacy/probe_filter.py view --attack "blend@0.005#3" --seed 0

`heads`: over the stem of a finished T&R cell (its model.safetensors), fit stage 2's new head
again on other data (holdout alone; kept samples the probe does not reject, with and without thin
classes topped up; every kept sample; every training sample, isolated ones too) and print CA and
per-class accuracy, so the head's data can be judged apart from the stem:

    python3 bench/efficacy/probe_filter.py heads --cell <key> --attack clean --seed 0

`teacher`: the same question with the finished cell's own new head as the referee instead of the
probe (twelfth round): a T&R cell whose stage 2 trained on the holdout alone has a head that never
saw a training label, over a stem that trained as long as the launch. Print what share of clean
and of poisoned training samples that head gives their own label at each threshold, then fit the
head again on the holdout plus the training samples it accepts (every one, or only those isolation
kept; with and without the candidate class) and print CA and ASR:

    python3 bench/efficacy/probe_filter.py teacher --cell <key>

Trains isolation (view) or five stage-2 heads (heads, teacher): minutes on an idle core, about half an hour
beside two efficacy cells; writes under bench/out/efficacy/<profile>/probe-filter/.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import OUT, PROFILES, parse_attack, prepare_attack, prepare_clean  # noqa: E402  (bench/efficacy/run.py; puts bench/ on the path)

from trapdoor_trainer.context import RunContext  # noqa: E402
from trapdoor_trainer.data import to_float_nchw  # noqa: E402
from trapdoor_trainer.defenses import tnr  # noqa: E402
from trapdoor_trainer.defenses.common import build_model, evaluate  # noqa: E402
from trapdoor_trainer.defenses.trap_signals import training_set_view  # noqa: E402
from trapdoor_trainer.events import Emitter  # noqa: E402
from trapdoor_trainer.idx import FASHION_MNIST_DIR  # noqa: E402
from trapdoor_trainer.phases import PhaseRunner  # noqa: E402
from trapdoor_trainer.runner import configure_cpu_threads, load_job_data, pick_device  # noqa: E402
from trapdoor_trainer.safetensors import load_file  # noqa: E402
from trapdoor_trainer.spec import parse_spec  # noqa: E402

THRESHOLDS = (0.01, 0.02, 0.05, 0.1)  # probe p(label); the rule uses tnr.PLAUSIBLE_SHARE_OF_CHANCE / classes (0.05)
THRESHOLDS_TEACHER = (0.001, 0.005, 0.01, 0.02, 0.05)  # the finished head's p(label); its heads are refitted at --threshold (0.01)
HEADS = ("holdout", "plausible+top-up", "plausible", "kept", "everything")
TEACHER_HEADS = ("accepted", "accepted kept", "accepted off-candidate", "accepted kept off-candidate")


def context(spec: dict, work: Path, data=None) -> RunContext:
    parsed = parse_spec(spec)
    work.mkdir(parents=True, exist_ok=True)
    return RunContext(spec=parsed, workdir=work, device=pick_device(spec["device"]), emitter=Emitter(io.StringIO()),
                      data=data if data is not None else load_job_data(parsed))


def view_path(root: Path, attack: str, seed: int) -> Path:
    return root / "probe-filter" / f"view-{attack}-{seed}.npz"


def view(root: Path, profile: dict, attack: str, seed: int) -> None:
    clean = prepare_clean(root, profile["train"], profile["test"], FASHION_MNIST_DIR)
    data = prepare_attack(root, clean, attack)
    target = None if attack == "clean" else parse_attack(attack)["target"]
    spec = {"method": "TRAP_AND_REPLACE", "architecture": "wrn16-1", "data": data, "target": target, "seed": seed, "device": profile["device"],
            "hyperparameters": {"stage1Epochs": profile["stage1Epochs"], "stage2Epochs": profile["stage2Epochs"], "evalEvery": 0, "previewCount": 0}}
    ctx = context(spec, root / "probe-filter" / f"work-{attack}-{seed}")
    settings = tnr.stage2_settings(ctx.hp)
    passed = tnr.trap_and_probe(ctx, PhaseRunner(ctx), settings, tnr.isolation_epochs(ctx.hp), ctx.hp["isolateProbeEpochs"])
    isolation = tnr.drop_suspicious(ctx, passed["trappedView"], passed["model"])
    probe = training_set_view(ctx, passed["model"])
    train = ctx.data.train
    mask = train.poison_mask if train.poison_mask is not None else np.zeros(len(train.labels), dtype=bool)
    path = view_path(root, attack, seed)
    np.savez(path, probe_logp=probe["labelLogProb"].numpy(), kept=np.asarray(isolation["kept"]), labels=train.labels, mask=mask)
    print(f"{attack} seed {seed}: verdict {isolation['isolationVerdict']}, candidate {isolation['isolationCandidate']}, probe CA {isolation['probeCa']:.3f}; saved {path}")
    report(path)


def kept_mask(size: int, kept) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[np.asarray(kept)] = True
    return mask


def report(path: Path) -> None:
    saved = np.load(path)
    labels, mask, p = saved["labels"], saved["mask"], np.exp(saved["probe_logp"])
    kept = kept_mask(len(labels), saved["kept"])
    print(f"kept {kept.sum()}, poisoned among them {(kept & mask).sum()} of {mask.sum()}")
    for threshold in THRESHOLDS:
        chosen = kept & (p >= threshold)
        print(f"  probe p(label) >= {threshold:g}: {chosen.sum()} kept samples, {(chosen & mask).sum()} poisoned; per class {np.bincount(labels[chosen], minlength=int(labels.max()) + 1).tolist()}")
    if (kept & mask).any():
        print(f"  the kept poisoned samples' probe p(label): {np.round(np.sort(p[kept & mask]), 3).tolist()}")


def finished_cell(root: Path, cell: str) -> tuple[Path, dict]:
    """A finished efficacy cell's work directory and its job spec, to be run again from scratch."""
    workdir = root / "work" / cell
    return workdir, {**json.loads((workdir / "spec.json").read_text()), "resumeFrom": None}


def cell_model(ctx: RunContext, workdir: Path, settings: dict, whole: bool):
    """A model shaped like the cell's final network, with the cell's stem (and head, when `whole`)."""
    model = build_model(ctx, with_decoder=True)
    tnr.prepare_stage2(ctx, model, settings)
    state = load_file(workdir / "model.safetensors")
    # strict=False: without `whole` the head stays freshly seeded
    model.load_state_dict(state if whole else {k: t for k, t in state.items() if k.startswith("stem.")}, strict=False)
    return model


def heads(root: Path, cell: str, attack: str, seed: int) -> None:
    workdir, spec = finished_cell(root, cell)
    saved = np.load(view_path(root, attack, seed))
    labels, p = saved["labels"], np.exp(saved["probe_logp"])
    kept = kept_mask(len(labels), saved["kept"])
    data = None
    for name in HEADS:
        ctx = context(spec, root / "probe-filter" / f"heads-{cell}-{name}", data)
        data = ctx.data
        settings = {**tnr.stage2_settings(ctx.hp), "overlay": 0.0}
        model = cell_model(ctx, workdir, settings, whole=False)
        plausible = kept & (p >= tnr.PLAUSIBLE_SHARE_OF_CHANCE / data.num_classes)
        chosen = {"plausible+top-up": plausible, "plausible": plausible, "kept": kept, "everything": np.ones(len(labels), dtype=bool)}.get(name)
        stage2 = ctx.device_data("holdout") if chosen is None else tnr.with_training_samples(ctx, np.flatnonzero(chosen), top_up=name.endswith("top-up"))[0]
        tnr.run_stage2(ctx, PhaseRunner(ctx), model, settings, data=stage2)
        model.eval()
        test = ctx.device_data("test")
        with torch.no_grad():
            pred = torch.cat([model(to_float_nchw(test.images[i : i + 500])).argmax(1) for i in range(0, len(test), 500)])
        per_class = [round(float((pred[test.labels == c] == c).float().mean()), 2) for c in range(data.num_classes)]
        print(f"{name:17s} CA {evaluate(ctx, model)['ca']:.4f}  head data {len(stage2)}  per class {per_class}", flush=True)


def teacher(root: Path, cell: str, threshold: float) -> None:
    workdir, spec = finished_cell(root, cell)
    ctx = context(spec, root / "probe-filter" / f"teacher-{cell}")
    settings = {**tnr.stage2_settings(ctx.hp), "overlay": 0.0}
    p = np.exp(training_set_view(ctx, cell_model(ctx, workdir, settings, whole=True))["labelLogProb"].numpy())
    phases = torch.load(workdir / "checkpoints" / "latest.pt", map_location="cpu")["phases"]
    isolation = phases["isolate-drop"]
    train = ctx.data.train
    labels = train.labels
    mask = train.poison_mask if train.poison_mask is not None else np.zeros(len(labels), dtype=bool)
    kept = kept_mask(len(labels), isolation["kept"])
    candidate = isolation.get("isolationCandidate")
    print(f"cell {cell}: verdict {isolation['isolationVerdict']}, candidate {candidate}; poisoned {mask.sum()}, {(kept & mask).sum()} of them kept")
    for t in THRESHOLDS_TEACHER:
        accepted = p >= t
        print(f"  head p(label) >= {t:g}: clean accepted {(accepted & ~mask).sum() / max(1, (~mask).sum()):.3f}, poisoned accepted {(accepted & mask).sum()} "
              f"(kept {(accepted & mask & kept).sum()}); clean rejected per class {np.bincount(labels[~accepted & ~mask], minlength=ctx.data.num_classes).tolist()}")
    if mask.any():
        print(f"  the poisoned samples' p(label), kept ones: {np.round(np.sort(p[mask & kept]), 3).tolist()}")
    accepted = p >= threshold
    data = ctx.data
    for name in TEACHER_HEADS:
        chosen = accepted & (kept if "kept" in name else True)
        balance = None
        if name.endswith("off-candidate") and candidate is not None:
            chosen &= labels != candidate
            balance = candidate
        head_ctx = context(spec, root / "probe-filter" / f"teacher-{cell}-{name.replace(' ', '-')}", data)
        model = cell_model(head_ctx, workdir, settings, whole=False)
        stage2, added = tnr.with_training_samples(head_ctx, np.flatnonzero(chosen), balance=balance, weight=head_ctx.hp["stage2CandidateWeight"], top_up=balance is None)
        tnr.run_stage2(head_ctx, PhaseRunner(head_ctx), model, settings, data=stage2)
        result = evaluate(head_ctx, model)
        asr = "–" if result["asr"] is None else f"{result['asr']:.4f}"
        print(f"{name:28s} p >= {threshold:g}: CA {result['ca']:.4f} ASR {asr}  head data {len(stage2)} (training {added['stage2TrainCount']}, poisoned {added.get('stage2TrainPoisoned', 0)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("view", "heads", "teacher"))
    parser.add_argument("--attack", default="clean")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell", help="heads: the finished T&R cell whose stem to use (its key)")
    parser.add_argument("--threshold", type=float, default=0.01, help="teacher: the head's p(label) a training sample needs to be taken back")
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    configure_cpu_threads()
    root = OUT / args.profile
    if args.what == "view":
        view(root, PROFILES[args.profile], args.attack, args.seed)
    elif args.what == "heads":
        heads(root, args.cell, args.attack, args.seed)
    else:
        teacher(root, args.cell, args.threshold)


if __name__ == "__main__":
    main()
