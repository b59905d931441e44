"""Steps several defenses share: building the model, evaluation, stage loss functions, plain
classifier training and the backdoored starting point of post-training defenses."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..context import RunContext
from ..metrics import attack_success_rate, clean_accuracy
from ..models import SplitModel, create_model
from ..phases import PhaseRunner
from ..training import Phase


def build_model(ctx: RunContext, with_decoder: bool, norm: str = "batch") -> SplitModel:
    c, h, w = ctx.data.image_shape
    torch.manual_seed(ctx.spec.seed)
    model = create_model(
        ctx.spec.architecture,
        c,
        ctx.data.num_classes,
        (h, w),
        stem_end_block=ctx.hp.get("stemEndBlock", 5),
        faithful_wrn=ctx.hp.get("faithfulWrn", True),
        with_decoder=with_decoder,
        norm=norm,
    )
    model = model.to(ctx.device)
    if ctx.device.type == "cpu" or ctx.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def evaluate(ctx: RunContext, model, prefix: str = "") -> dict:
    """CA on the clean test set and ASR on the triggered non-target set (None when no trigger is known)."""
    bs = ctx.hp["evalBatchSize"]
    out = {f"{prefix}ca": clean_accuracy(model, ctx.device_data("test"), bs, ctx.amp_dtype)}
    asr_data = ctx.device_data("asr")
    out[f"{prefix}asr"] = None if asr_data is None else attack_success_rate(model, asr_data, ctx.data.target, bs, ctx.amp_dtype)
    return out


def holdout_accuracy(ctx: RunContext, model) -> float:
    return clean_accuracy(model, ctx.device_data("holdout"), ctx.hp["evalBatchSize"], ctx.amp_dtype)


def cross_entropy_loss(model, label_smoothing: float = 0.0):
    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        loss = F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)
        return loss, {"ce": loss}

    return loss_fn


def eval_due(hp: dict, epoch: int, epochs: int) -> bool:
    every = hp.get("evalEvery", 0)
    return bool(every) and ((epoch + 1) % every == 0 or epoch + 1 == epochs)


def epoch_metrics(ctx: RunContext, model, epoch: int, epochs: int) -> dict:
    """What every phase reports after an epoch: holdout accuracy, plus test CA/ASR when evalEvery says so."""
    metrics = {"holdoutAccuracy": holdout_accuracy(ctx, model)}
    if eval_due(ctx.hp, epoch, epochs):
        metrics.update(evaluate(ctx, model))
    return metrics


def train_classifier(ctx: RunContext, runner: PhaseRunner, stage: str, epochs: int, data_name: str = "train+holdout",
                     summary: Optional[Callable[[SplitModel], dict]] = None) -> tuple[SplitModel, dict]:
    """Plain CE training of a fresh model (no decoder) with the job's lr / weightDecay / batchSize /
    augment: NO_DEFENSE's whole method and the backdoored starting point of post-training
    defenses. `summary(model)` adds to the phase's result. Returns (model, result)."""
    hp = ctx.hp
    model = build_model(ctx, with_decoder=False)
    result = runner.run(Phase(
        name=stage,
        epochs=epochs,
        batch_size=hp["batchSize"],
        lr=hp["lr"],
        weight_decay=hp["weightDecay"],
        data=ctx.device_data(data_name),
        parameters=list(model.parameters()),
        loss_fn=cross_entropy_loss(model),
        set_modes=model.train,
        saves={"model": model},
        augment=hp["augment"],
        on_epoch_end=lambda epoch: epoch_metrics(ctx, model, epoch, epochs),
        summary=None if summary is None else lambda: summary(model),
        model=model,
    ))
    return model, result


PRETRAIN_STAGE = "pretrain"


def starting_model(ctx: RunContext, runner: PhaseRunner) -> tuple[SplitModel, dict]:
    """The backdoored model a post-training defense (FP, NAD, I-BAU, ANP) starts from.

    `data.initModel` (a previous job's artifact directory) when given; otherwise a NO_DEFENSE run
    of `pretrainEpochs` on train + holdout (phase "pretrain"), as the paper's baselines start from
    the no-defense model. A job resumed past pretraining skips it and gets a fresh model whose
    weights the resumed phase loads from the checkpoint, so every later phase saves the model.
    Returns (model, summary) where summary holds the starting point's CA/ASR and pretraining time.
    """
    if ctx.spec.data.init_model is not None:
        model = load_init_model(ctx)
        return model, {**_before(ctx, model), "pretrainSeconds": 0.0}
    model, pretrain = train_classifier(ctx, runner, PRETRAIN_STAGE, ctx.hp["pretrainEpochs"], summary=lambda trained: _before(ctx, trained))
    return model, {"beforeCa": pretrain["beforeCa"], "beforeAsr": pretrain["beforeAsr"], "pretrainSeconds": pretrain["seconds"]}


def _before(ctx: RunContext, model) -> dict:
    metrics = evaluate(ctx, model)
    return {"beforeCa": metrics["ca"], "beforeAsr": metrics["asr"]}


def load_init_model(ctx: RunContext) -> SplitModel:
    """The backdoored model of `data.initModel`, checked against this job's data and architecture."""
    import json
    from pathlib import Path

    from ..errors import SpecError
    from ..export import load_exported_model

    root = Path(ctx.spec.data.init_model)
    try:
        config = json.loads((root / "config.json").read_text())
        model = load_exported_model(root)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise SpecError("data.initModel", f"cannot load a trapdoor model from {root}: {e}") from None
    c, h, w = ctx.data.image_shape
    expected = {"architecture": ctx.spec.architecture, "inChannels": c, "height": h, "width": w, "numClasses": ctx.data.num_classes}
    for key, value in expected.items():
        if config.get(key) != value:
            raise SpecError("data.initModel", f"model has {key} {config.get(key)!r} but this job needs {value!r}")
    return model.to(ctx.device).to(memory_format=torch.channels_last)
