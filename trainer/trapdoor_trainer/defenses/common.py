"""Steps several defenses share: building the model, evaluation, stage loss functions."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..context import RunContext
from ..metrics import attack_success_rate, clean_accuracy
from ..models import SplitModel, create_model


def build_model(ctx: RunContext, with_decoder: bool) -> SplitModel:
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


def restore_history(ctx: RunContext, stage: str) -> Optional[list]:
    state = ctx.resume_state
    if state is None or state.get("stage") != stage:
        return None
    return list(state.get("history", []))
