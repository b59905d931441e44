"""TRAP_AND_REPLACE (Wang et al., NeurIPS 2022).

Stage 1 trains stem + lightweight head + decoder on the (possibly poisoned) training split with
CE + lambda1 * MSE(recon, input) + lambda2 * TV(recon): the easy backdoor shortcut is meant to
land in the small head while reconstruction keeps the stem on real image features.
Stage 2 discards head and decoder, freezes the stem *and its BN statistics*, and trains a fresh
head of the same shape on the clean holdout only. Final model = stem + new head.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..context import RunContext
from ..hyperparams import COMMON, Param
from ..metrics import reconstruction_mse, total_variation
from ..training import Phase, derive_seed, run_phase
from .common import build_model, epoch_metrics, eval_due, evaluate, holdout_accuracy, restore_history
from .registry import MethodInfo

# Stage-2 recipes. `paper`: the appendix's "stage-1 hyper-parameters with batch 32".
# `official`: what the released code runs (Adam 0.03, 100 epochs, batch 64, CutMix every batch,
# label smoothing 0.1, dropout 0.5 inside the new block).
STAGE2_RECIPES = {
    "paper": {"epochs": None, "batchSize": 32, "lr": None, "cutmix": False, "labelSmoothing": 0.0, "dropout": 0.0},
    "official": {"epochs": 100, "batchSize": 64, "lr": 0.03, "cutmix": True, "labelSmoothing": 0.1, "dropout": 0.5},
}

HYPERPARAMETERS = {
    "stage1Epochs": Param(200, "int", "stage-1 (trap) epochs", minimum=1, maximum=10000),
    "stage2Epochs": Param(None, "int", "stage-2 (replace) epochs; null = the recipe's (paper: stage1Epochs, official: 100)", minimum=1, maximum=10000, nullable=True),
    "lambda1": Param(10.0, "float", "weight of the reconstruction MSE in stage 1", minimum=0),
    "lambda2": Param(0.1, "float", "weight of the total-variation term on the reconstruction (paper 0.1; official code 1)", minimum=0),
    **COMMON,
    "stage2BatchSize": Param(None, "int", "stage-2 batch size; null = the recipe's (paper 32, official 64)", minimum=1, nullable=True),
    "stage2Lr": Param(None, "float", "stage-2 learning rate; null = the recipe's (paper: lr, official: 0.03)", minimum=0, nullable=True),
    "stage2Recipe": Param("paper", "str", "stage-2 training recipe", choices=tuple(STAGE2_RECIPES)),
    "stemEndBlock": Param(5, "int", "WRN split: last block in the stem (4, 5 or 6); 5 = after block3[0] as in the paper", choices=(4, 5, 6)),
    "faithfulWrn": Param(True, "bool", "reproduce the official WRN's channel-changing-block quirk (conv reads the un-normalised input)"),
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N epochs (reporting only, never selection); 0 = only at the end", minimum=0),
    "previewCount": Param(8, "int", "images in the reconstruction preview PNG", minimum=0, maximum=64),
}


def stage2_settings(hp: dict) -> dict:
    recipe = dict(STAGE2_RECIPES[hp["stage2Recipe"]])
    recipe["epochs"] = hp["stage2Epochs"] or recipe["epochs"] or hp["stage1Epochs"]
    recipe["batchSize"] = hp["stage2BatchSize"] or recipe["batchSize"]
    recipe["lr"] = hp["stage2Lr"] if hp["stage2Lr"] is not None else (recipe["lr"] or hp["lr"])
    return recipe


def stage1_loss(model, lambda1: float, lambda2: float):
    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        logits, recon = model.forward_with_reconstruction(x)
        recon = recon.float()
        ce = F.cross_entropy(logits.float(), y)
        mse = F.mse_loss(recon, x)  # target: the network's own (augmented, possibly triggered) input
        tv = total_variation(recon)
        total = ce + lambda1 * mse + lambda2 * tv
        return total, {"total": total, "ce": ce, "mse": mse, "tv": tv}

    return loss_fn


def cutmix(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    """Paste a random box from a permuted batch (Beta(1,1) area); returns mixed x, both labels, exact pixel ratio."""
    n, _, h, w = x.shape
    lam = float(torch.rand(1, generator=generator))
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, (1,), generator=generator)), int(torch.randint(w, (1,), generator=generator))
    y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    perm = torch.randperm(n, generator=generator).to(x.device)
    mixed = x.clone()
    mixed[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    kept = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
    return mixed, y, y[perm], kept


def stage2_loss(model, settings: dict):
    smoothing = settings["labelSmoothing"]

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        if settings["cutmix"]:
            x, ya, yb, kept = cutmix(x, y, generator)
            logits = model(x).float()
            loss = kept * F.cross_entropy(logits, ya, label_smoothing=smoothing) + (1 - kept) * F.cross_entropy(logits, yb, label_smoothing=smoothing)
        else:
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=smoothing)
        return loss, {"ce": loss}

    return loss_fn


def run_stage1(ctx: RunContext, model, resume: Optional[dict]) -> dict:
    hp = ctx.hp
    bs = hp["evalBatchSize"]

    def on_epoch_end(epoch: int) -> dict:
        metrics = {"holdoutAccuracy": holdout_accuracy(ctx, model), "mse": reconstruction_mse(model, ctx.device_data("test"), bs, ctx.amp_dtype)}
        asr_data = ctx.device_data("asr")
        if asr_data is not None:
            metrics["mseTriggered"] = reconstruction_mse(model, asr_data, bs, ctx.amp_dtype)
        if eval_due(hp, epoch, hp["stage1Epochs"]):
            metrics.update(evaluate(ctx, model))
        return metrics

    phase = Phase(
        name="stage1",
        epochs=hp["stage1Epochs"],
        batch_size=hp["batchSize"],
        lr=hp["lr"],
        weight_decay=hp["weightDecay"],
        data=ctx.device_data("train"),
        parameters=list(model.parameters()),
        loss_fn=stage1_loss(model, hp["lambda1"], hp["lambda2"]),
        set_modes=model.train,
        augment=hp["augment"],
        on_epoch_end=on_epoch_end,
        model=model,
        checkpoint_state=lambda: {"model": model.state_dict()},
        history=restore_history(ctx, "stage1") or [],
    )
    start = (resume["epoch"], resume["step"], resume["optimizer"]) if resume else (0, 0, None)
    run_phase(ctx, phase, start_epoch=start[0], start_step=start[1], optimizer_state=start[2])
    trapped = evaluate(ctx, model, prefix="stage1")
    summary = {
        "stage1Asr": trapped["stage1asr"],
        "stage1Ca": trapped["stage1ca"],
        "mse": reconstruction_mse(model, ctx.device_data("test"), bs, ctx.amp_dtype),
        "mseTriggered": None if ctx.device_data("asr") is None else reconstruction_mse(model, ctx.device_data("asr"), bs, ctx.amp_dtype),
        "history": phase.history,
        "seconds": phase.seconds,
        "imagesPerSecond": phase.images_per_second,
    }
    write_previews(ctx, model)
    return summary


def write_previews(ctx: RunContext, model) -> None:
    count = ctx.hp["previewCount"]
    if count == 0:
        return
    from ..data import to_float_nchw
    from ..export import write_reconstruction_preview

    model.eval()
    with torch.no_grad():
        clean = to_float_nchw(ctx.device_data("test").images[:count])
        _, clean_recon = model.forward_with_reconstruction(clean)
        triggered = triggered_recon = None
        asr_data = ctx.device_data("asr")
        if asr_data is not None:
            triggered = to_float_nchw(asr_data.images[:count])
            _, triggered_recon = model.forward_with_reconstruction(triggered)
    path = ctx.workdir / "preview_reconstruction.png"
    write_reconstruction_preview(
        path, clean.float().cpu(), clean_recon.float().cpu(),
        None if triggered is None else triggered.float().cpu(), None if triggered_recon is None else triggered_recon.float().cpu(), n=count,
    )
    ctx.preview_paths = [path]


def prepare_stage2(ctx: RunContext, model, settings: dict) -> None:
    """Drop decoder and trapped head, freeze the stem, seed a fresh head of the same shape."""
    model.drop_decoder()
    for p in model.stem.parameters():
        p.requires_grad_(False)
    torch.manual_seed(derive_seed(ctx.spec.seed, "stage2-head"))
    model.replace_head(settings["dropout"])
    model.to(ctx.device, memory_format=torch.channels_last)


def run_stage2(ctx: RunContext, model, settings: dict, stage1: dict, resume: Optional[dict]) -> dict:
    hp = ctx.hp

    def set_modes() -> None:
        model.eval()  # stem BN statistics stay frozen
        model.head.train()

    def on_epoch_end(epoch: int) -> dict:
        metrics = epoch_metrics(ctx, model, epoch, settings["epochs"])
        return metrics

    phase = Phase(
        name="stage2",
        epochs=settings["epochs"],
        batch_size=settings["batchSize"],
        lr=settings["lr"],
        weight_decay=hp["weightDecay"],
        data=ctx.device_data("holdout"),
        parameters=list(model.head.parameters()),
        loss_fn=stage2_loss(model, settings),
        set_modes=set_modes,
        augment=hp["augment"],
        on_epoch_end=on_epoch_end,
        model=model,
        checkpoint_state=lambda: {"model": model.state_dict(), "stage1": stage1},
        history=restore_history(ctx, "stage2") or [],
    )
    start = (resume["epoch"], resume["step"], resume["optimizer"]) if resume else (0, 0, None)
    run_phase(ctx, phase, start_epoch=start[0], start_step=start[1], optimizer_state=start[2])
    return {"history": phase.history, "seconds": phase.seconds, "imagesPerSecond": phase.images_per_second}


def run(ctx: RunContext) -> dict:
    settings = stage2_settings(ctx.hp)
    model = build_model(ctx, with_decoder=True)
    resume = ctx.resume_state
    if resume is not None and resume["stage"] == "stage2":
        prepare_stage2(ctx, model, settings)
        model.load_state_dict(resume["model"])
        stage1 = resume["stage1"]
        stage2 = run_stage2(ctx, model, settings, stage1, resume)
    else:
        if resume is not None:
            model.load_state_dict(resume["model"])
        stage1 = run_stage1(ctx, model, resume)
        prepare_stage2(ctx, model, settings)
        stage2 = run_stage2(ctx, model, settings, stage1, None)
    final = evaluate(ctx, model)
    return {
        "model": model,
        "metrics": {**final, "mse": stage1["mse"], "mseTriggered": stage1["mseTriggered"], "stage1Asr": stage1["stage1Asr"], "stage1Ca": stage1["stage1Ca"]},
        "history": {"stage1": stage1["history"], "stage2": stage2["history"]},
        "timings": {"stage1Seconds": stage1["seconds"], "stage2Seconds": stage2["seconds"]},
        "imagesPerSecond": {"stage1": stage1["imagesPerSecond"], "stage2": stage2["imagesPerSecond"]},
        "resolved": {"stage2": settings},
    }


METHOD = MethodInfo(
    "TRAP_AND_REPLACE",
    "Trap and Replace: trap the backdoor in a small head with a reconstruction-regularised stem, then replace the head using the clean holdout",
    "training",
    HYPERPARAMETERS,
    run,
    order=0,
)
