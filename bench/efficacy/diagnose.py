"""Where does the backdoor live? Per stage-1 epoch of T&R, on one attack:

- probe "is triggered": a linear probe on pooled stem features, trained on the holdout plus its
  triggered copy, measured on clean vs triggered test images (accuracy; 50 % = the stem does not
  separate them);
- probe "predicts target": a linear class probe on pooled stem features trained on the clean
  holdout only; the share of triggered non-target test images it sends to the target;
- fresh head: a new head trained on the holdout (the stage-2 recipe, `--fresh-epochs`) over a
  copy of the stem at that epoch; its ASR and CA;
- the trapped head's own ASR.

    python bench/efficacy/diagnose.py --attack badnet_grid --epochs 8 [--stem-ce-scale 0]

Writes bench/out/efficacy/diagnose-<attack>-<variant>.json and, with matplotlib, a PNG next to
bench/EFFICACY.md.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import EFFICACY_MD, OUT, PROFILES, prepare_attack, prepare_clean  # noqa: E402  (bench/efficacy/run.py; puts bench/ on the path)

from common import replace_section  # noqa: E402

from trapdoor_trainer.attacks.registry import build_trigger  # noqa: E402
from trapdoor_trainer.context import RunContext  # noqa: E402
from trapdoor_trainer.data import DeviceData, load_canonical, to_float_nchw  # noqa: E402
from trapdoor_trainer.defenses import tnr  # noqa: E402
from trapdoor_trainer.defenses.common import build_model, evaluate  # noqa: E402
from trapdoor_trainer.events import Emitter  # noqa: E402
from trapdoor_trainer.idx import FASHION_MNIST_DIR  # noqa: E402
from trapdoor_trainer.phases import PhaseRunner  # noqa: E402
from trapdoor_trainer.runner import configure_cpu_threads, load_job_data, pick_device  # noqa: E402
from trapdoor_trainer.spec import parse_spec  # noqa: E402
from trapdoor_trainer.training import Phase  # noqa: E402

TARGET = 0


@torch.no_grad()
def pooled_features(model, images, batch: int = 1000) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        x = to_float_nchw(torch.as_tensor(images[start : start + batch]))
        out.append(model.features(x).float().mean(dim=(2, 3)))
    return torch.cat(out)


def linear_probe(features: torch.Tensor, labels: torch.Tensor, classes: int, steps: int = 300) -> torch.nn.Linear:
    """Multinomial logistic regression (full-batch Adam on standardised features)."""
    torch.manual_seed(0)
    mean, std = features.mean(0), features.std(0) + 1e-6
    probe = torch.nn.Linear(features.shape[1], classes)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    z = (features - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe(z), labels).backward()
        opt.step()
    probe.standardise = (mean, std)
    return probe


def apply_probe(probe, features: torch.Tensor) -> torch.Tensor:
    mean, std = probe.standardise
    with torch.no_grad():
        return probe((features - mean) / std).argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attack", default="badnet_grid")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fresh-epochs", type=int, default=10)
    parser.add_argument("--stem-ce-scale", type=float, default=1.0)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--render-only", action="store_true", help="re-render from the JSON of an earlier run")
    args = parser.parse_args()
    name = f"diagnose-{args.attack}-stemce{args.stem_ce_scale:g}"
    if args.render_only:
        rows = json.loads((OUT / f"{name}.json").read_text())
        return record(rows, name, args)
    p = PROFILES[args.profile]
    root = OUT / args.profile
    clean = prepare_clean(root, p["train"], p["test"], FASHION_MNIST_DIR)
    data = prepare_attack(root, clean, args.attack)
    work = root / "diagnose" / f"{args.attack}-{args.stem_ce_scale}"
    work.mkdir(parents=True, exist_ok=True)
    spec = parse_spec({"method": "TRAP_AND_REPLACE", "architecture": "wrn16-1", "data": data, "target": TARGET, "seed": 0, "device": p["device"],
                           "hyperparameters": {"stage1Epochs": args.epochs, "stage2Epochs": args.fresh_epochs, "stemCeScale": args.stem_ce_scale, "evalEvery": 0, "previewCount": 0}})
    configure_cpu_threads()
    ctx = RunContext(spec=spec, workdir=work, device=pick_device(p["device"]), emitter=Emitter(io.StringIO()), data=load_job_data(spec))
    holdout = load_canonical(data["holdout"])
    trigger = build_trigger(args.attack, None, holdout.shape, seed=0, target=TARGET)
    holdout_triggered = trigger.apply(holdout.images)
    test = ctx.data.test
    asr_images = ctx.data.asr_images
    clean_test = test.images[test.labels != TARGET][: len(asr_images)]
    settings = tnr.stage2_settings(ctx.hp)
    model = build_model(ctx, with_decoder=True)
    rows = []

    def probe_epoch(epoch: int) -> dict:
        f_hold, f_hold_trig = pooled_features(model, holdout.images), pooled_features(model, holdout_triggered)
        f_clean, f_trig = pooled_features(model, clean_test), pooled_features(model, asr_images)
        is_trig = linear_probe(torch.cat([f_hold, f_hold_trig]), torch.cat([torch.zeros(len(f_hold)), torch.ones(len(f_hold_trig))]).long(), 2)
        triggered_acc = float(torch.cat([apply_probe(is_trig, f_clean) == 0, apply_probe(is_trig, f_trig) == 1]).float().mean())
        cls = linear_probe(f_hold, torch.as_tensor(holdout.labels), ctx.data.num_classes)
        probe_target = float((apply_probe(cls, f_trig) == TARGET).float().mean())
        trapped = evaluate(ctx, model)
        fresh = copy.deepcopy(model)
        tnr.prepare_stage2(ctx, fresh, settings)
        fresh_ctx = copy.copy(ctx)
        fresh_ctx.workdir = work / "fresh"
        fresh_ctx.resume_state = None
        tnr.run_stage2(fresh_ctx, PhaseRunner(fresh_ctx), fresh, settings, name=f"fresh-{epoch}")
        fresh_eval = evaluate(ctx, fresh)
        row = {"epoch": epoch + 1, "probeTriggeredAccuracy": triggered_acc, "probeTargetShare": probe_target,
               "trappedAsr": trapped["asr"], "trappedCa": trapped["ca"], "freshAsr": fresh_eval["asr"], "freshCa": fresh_eval["ca"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        return {}

    phase = Phase(
        name="stage1", epochs=args.epochs, batch_size=ctx.hp["batchSize"], lr=ctx.hp["lr"], weight_decay=ctx.hp["weightDecay"],
        data=ctx.device_data("train"), parameters=list(model.parameters()),
        loss_fn=tnr.stage1_loss(model, ctx.hp["lambda1"], ctx.hp["lambda2"], args.stem_ce_scale),
        set_modes=model.train, saves={"model": model}, augment=ctx.hp["augment"], on_epoch_end=probe_epoch, model=model,
    )
    PhaseRunner(ctx).run(phase)
    (OUT / f"{name}.json").write_text(json.dumps(rows, indent=1))
    record(rows, name, args)


def record(rows: list[dict], name: str, args) -> None:
    """A table in bench/EFFICACY.md (section `name`) and, with matplotlib, a plot beside it."""
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = [f"`python bench/efficacy/diagnose.py --attack {args.attack} --epochs {len(rows)} --stem-ce-scale {args.stem_ce_scale:g}` "
             f"(profile {args.profile}; fresh heads: {args.fresh_epochs} epochs of the stage-2 recipe on the holdout)", "",
             "| stage-1 epoch | 'is triggered' probe acc. % | class probe → target % | trapped head ASR / CA % | fresh head ASR / CA % |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['epoch']} | {pct(r['probeTriggeredAccuracy'])} | {pct(r['probeTargetShare'])} | {pct(r['trappedAsr'])} / {pct(r['trappedCa'])} | {pct(r['freshAsr'])} / {pct(r['freshCa'])} |")
    replace_section(name, "\n".join(lines), EFFICACY_MD)
    plot(rows, name, args)


def plot(rows: list[dict], name: str, args) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    out = Path(__file__).resolve().parents[1] / "efficacy-plots"
    out.mkdir(exist_ok=True)
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("trappedAsr", "trapped head ASR"), ("freshAsr", "fresh head ASR"), ("probeTargetShare", "linear class probe → target"),
                       ("probeTriggeredAccuracy", "'is triggered' probe accuracy"), ("freshCa", "fresh head CA")):
        ax.plot(epochs, [100 * r[key] for r in rows], marker="o", label=label)
    ax.set_xlabel("stage-1 epoch")
    ax.set_ylabel("%")
    ax.set_title(f"{args.attack}, stem CE scale {args.stem_ce_scale:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=90)


if __name__ == "__main__":
    main()
