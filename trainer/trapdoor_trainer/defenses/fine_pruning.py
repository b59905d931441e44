"""FINE_PRUNING (Liu, Dolan-Gavitt & Garg, RAID 2018), post-training.

Backdoor neurons tend to be dormant on clean inputs. Starting from the backdoored model:
1. rank the channels of the last feature layer (the head's feature map, i.e. what the final
   linear layer reads after pooling) by their mean activation on the clean holdout;
2. prune them lowest-first, a few per step, and stop before holdout accuracy falls more than
   `maxAccuracyDrop` (relative) below the unpruned model's;
3. fine-tune the pruned network on the holdout.
Pruning channel c is the same as zeroing column c of the final linear layer's weight, so the
mask lives in the exported weights; a gradient hook keeps those columns at exactly zero while
fine-tuning.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..context import RunContext
from ..hyperparams import COMMON, PRETRAIN, Param
from ..phases import PhaseRunner, Step
from ..recipes import PhaseRecipe, Recipe, recipe_param
from ..training import Phase
from .common import cross_entropy_loss, epoch_metrics, evaluate, holdout_accuracy, starting_model
from .feature_hooks import final_layer_inputs
from .registry import METHODS

STAGE, PRUNE = "finetune", "prune"
# No official code exists (the paper's authors published none); BackdoorBench's fp.py is the
# reference implementation its leaderboard uses: fine-tune 100 epochs, SGD + cosine at 0.01.
FINETUNE_RECIPE = PhaseRecipe(Recipe("sgd", momentum=0.9, schedule="cosine"), published_lr=0.01, published_weight_decay=5e-4)

HYPERPARAMETERS = {
    "epochs": Param(100, "int", "fine-tuning epochs on the holdout after pruning (BackdoorBench FP: 100); 0 = prune only", minimum=0, maximum=10000),
    **COMMON,
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N epochs (reporting only, never selection); 0 = only at the end", minimum=0),
    **PRETRAIN,
    "recipe": recipe_param("SGD, momentum 0.9, lr 0.01, weight decay 5e-4, cosine (BackdoorBench config/defense/fp/cifar10.yaml)"),
    "finetuneLr": Param(None, "float", "learning rate of the fine-tuning; null = the recipe's (published: SGD 0.01; adam: 1e-3)", minimum=0, maximum=10, nullable=True),
    "finetuneBatchSize": Param(256, "int", "fine-tuning batch size (BackdoorBench FP: 256)", minimum=1, maximum=65536),
    "finetuneWeightDecay": Param(5e-4, "float", "fine-tuning L2 weight decay (BackdoorBench FP: 5e-4, both recipes)", minimum=0, maximum=1),
    "maxAccuracyDrop": Param(
        0.1, "float",
        "stop rule: prune while holdout accuracy stays at or above (1 - this) x the unpruned model's (relative drop, BackdoorBench acc_ratio 0.1)",
        minimum=0, maximum=1,
    ),
    "pruneStep": Param(0.01, "float", "fraction of the last layer's channels pruned per step, rounded up to whole channels (BackdoorBench once_prune_ratio)", minimum=1e-6, maximum=1),
}


def dormant_first(activations: torch.Tensor) -> torch.Tensor:
    """Channel indices ordered by mean activation over the samples (N x C), lowest first; ties keep index order."""
    return torch.sort(activations.float().mean(dim=0), stable=True).indices


def prune_counts(channels: int, step_fraction: float) -> list[int]:
    """Cumulative pruned-channel counts tried in turn. Never all channels: a head with none left
    predicts a constant."""
    step = max(1, math.ceil(step_fraction * channels))
    return list(range(step, channels, step))


def choose_prune_count(counts: Sequence[int], accuracy_at: Callable[[int], float], unpruned: float, max_drop: float) -> tuple[int, list[dict]]:
    """Walk `counts` in order; keep the last count whose accuracy stays at or above
    (1 - max_drop) x `unpruned`, stopping at the first that falls below. Returns (count, curve tried)."""
    floor = (1.0 - max_drop) * unpruned
    chosen, curve = 0, []
    for count in counts:
        accuracy = accuracy_at(count)
        curve.append({"pruned": count, "holdoutAccuracy": accuracy})
        if accuracy < floor:
            break
        chosen = count
    return chosen, curve


def masked_accuracy(fc: nn.Linear, features: torch.Tensor, labels: torch.Tensor, pruned: torch.Tensor) -> float:
    """Accuracy of the final linear layer on cached features with the `pruned` input channels cut."""
    weight = fc.weight.detach().float().clone()
    weight[:, pruned] = 0.0
    logits = F.linear(features, weight, fc.bias.detach().float())
    return float((logits.argmax(dim=1) == labels).float().mean())


def zero_columns(fc: nn.Linear, channels: Sequence[int]) -> None:
    with torch.no_grad():
        fc.weight[:, list(channels)] = 0.0


def keep_columns_zero(fc: nn.Linear, channels: Sequence[int]):
    """Zero the gradient of the pruned columns. With Adam's coupled L2 decay a weight that is 0
    with a 0 gradient gets a 0 update, so the columns stay exactly zero. Returns the hook handle."""
    mask = torch.ones_like(fc.weight)
    mask[:, list(channels)] = 0.0
    return fc.weight.register_hook(lambda grad: grad * mask.to(grad.dtype))


def prune(ctx: RunContext, model) -> dict:
    """Rank, choose by the holdout stop rule, and bake the mask into `model.head.fc`."""
    started = time.perf_counter()
    holdout = ctx.device_data("holdout")
    features = final_layer_inputs(model, holdout, ctx.hp["evalBatchSize"], ctx.amp_dtype)
    order = dormant_first(features)
    fc = model.head.fc
    channels = features.shape[1]
    unpruned = masked_accuracy(fc, features, holdout.labels, order[:0])
    count, curve = choose_prune_count(
        prune_counts(channels, ctx.hp["pruneStep"]),
        lambda k: masked_accuracy(fc, features, holdout.labels, order[:k]),
        unpruned,
        ctx.hp["maxAccuracyDrop"],
    )
    pruned = [int(c) for c in order[:count]]
    zero_columns(fc, pruned)
    ctx.emitter.log(f"fine-pruning: pruned {count} of {channels} channels of the last feature layer (holdout accuracy floor {(1 - ctx.hp['maxAccuracyDrop']) * unpruned:.4f})")
    after = evaluate(ctx, model)  # reporting only
    return {
        "channels": channels,
        "prunedIndices": pruned,
        "prunedChannels": count,
        "prunedFraction": count / channels,
        "holdoutAccuracyUnpruned": unpruned,
        "holdoutAccuracyPruned": holdout_accuracy(ctx, model),
        "prunedCa": after["ca"],
        "prunedAsr": after["asr"],
        "curve": curve,
        "seconds": time.perf_counter() - started,
    }


def run_finetune(ctx: RunContext, runner: PhaseRunner, model, pruning: dict) -> dict:
    hp = ctx.hp
    recipe, lr, weight_decay = FINETUNE_RECIPE.resolve(hp, "finetuneLr", "finetuneWeightDecay")
    phase = Phase(
        name=STAGE,
        epochs=hp["epochs"],
        batch_size=hp["finetuneBatchSize"],
        lr=lr,
        weight_decay=weight_decay,
        recipe=recipe,
        data=ctx.device_data("holdout"),
        parameters=list(model.parameters()),
        loss_fn=cross_entropy_loss(model),
        set_modes=model.train,
        saves={"model": model},  # pruned, then fine-tuned
        augment=hp["augment"],
        on_epoch_end=lambda epoch: epoch_metrics(ctx, model, epoch, hp["epochs"]),
    )
    hook = keep_columns_zero(model.head.fc, pruning["prunedIndices"])
    try:
        return runner.run(phase)
    finally:
        hook.remove()


@METHODS.register(
    "FINE_PRUNING",
    description="Fine-Pruning: prune the last layer's channels that stay dormant on the clean holdout, then fine-tune on the holdout",
    kind="post-training",
    hyperparameters=HYPERPARAMETERS,
    order=10,
)
def run(ctx: RunContext) -> dict:
    runner = PhaseRunner(ctx)
    model, pretrain = starting_model(ctx, runner)
    pruning = runner.run(Step(PRUNE, lambda: prune(ctx, model)))
    finetune = run_finetune(ctx, runner, model, pruning)
    final = evaluate(ctx, model)
    summary = {k: pruning[k] for k in ("prunedChannels", "prunedFraction", "holdoutAccuracyUnpruned", "holdoutAccuracyPruned", "prunedCa", "prunedAsr")}
    return {
        "model": model,
        "metrics": {**final, "mse": None, "beforeCa": pretrain.get("beforeCa"), "beforeAsr": pretrain.get("beforeAsr"), **summary},
        "history": {PRUNE: pruning["curve"], STAGE: finetune["history"]},
        "timings": {"pretrainSeconds": pretrain.get("pretrainSeconds", 0.0), "pruneSeconds": pruning["seconds"], "finetuneSeconds": finetune["seconds"]},
        "imagesPerSecond": {STAGE: finetune["imagesPerSecond"]},
        "resolved": {
            "prunedChannelIndices": pruning["prunedIndices"],
            "layerChannels": pruning["channels"],
            "pruneStepChannels": max(1, math.ceil(ctx.hp["pruneStep"] * pruning["channels"])),
            "holdoutAccuracyFloor": (1.0 - ctx.hp["maxAccuracyDrop"]) * pruning["holdoutAccuracyUnpruned"],
            "recipe": {STAGE: FINETUNE_RECIPE.describe(ctx.hp, "finetuneLr", "finetuneWeightDecay")},
        },
    }
