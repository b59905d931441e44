"""ANP: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021), post-training.

Every BN channel gets a mask m in [0,1] on its scale and, while perturbed, multiplicative noise
on scale and shift: scale gamma * (m + dw), shift beta * (1 + db), |dw|, |db| <= eps. On the
clean holdout the masks minimise alpha * CE(masked) + (1 - alpha) * CE(masked and perturbed),
the perturbation being re-drawn each step and pushed up the loss by signed-gradient steps:
channels the backdoor hangs on are the ones whose perturbation hurts, and their masks shrink.
Then channels whose mask is below a threshold are pruned by zeroing their BN scale in the
original model (the shift stays, as in the official code), so the export is a plain model.
The threshold is fixed or chosen on the holdout, never with test data.

The surgery patches the BN layers' `forward` for the duration of the mask optimisation and
computes them with torch.nn.functional.batch_norm; models/ is untouched and the running
statistics never change.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..context import RunContext
from ..errors import SpecError
from ..hyperparams import COMMON, PRETRAIN, Param
from ..phases import PhaseRunner, Step
from ..recipes import PhaseRecipe, Recipe, recipe_param
from ..training import Phase
from .common import epoch_metrics, evaluate, holdout_accuracy, starting_model
from .perturbation import signed_ascent_step, uniform_in_box
from .registry import METHODS

STAGE, PRUNE = "mask", "prune"
# The official mask optimiser: SGD(lr 0.2, momentum 0.9), no weight decay, no schedule.
MASK_RECIPE = PhaseRecipe(Recipe("sgd", momentum=0.9, schedule="constant"), published_lr=0.2, published_weight_decay=0.0, adam_lr=0.01, adam_weight_decay=0.0)

HYPERPARAMETERS = {
    "epochs": Param(None, "int", "mask-optimisation passes over the holdout; null = enough passes for maskIterations steps", minimum=1, maximum=100000, nullable=True),
    **COMMON,
    **PRETRAIN,
    "maskIterations": Param(2000, "int", "mask-optimisation steps when epochs is null (official: 2000)", minimum=1, maximum=1000000),
    "maskBatchSize": Param(128, "int", "holdout batch size of the mask optimisation (official: 128)", minimum=1, maximum=65536),
    "recipe": recipe_param("SGD, momentum 0.9, constant lr 0.2 on the masks (official optimize_mask_cifar.py)"),
    "maskLr": Param(None, "float", "learning rate of the masks; null = the recipe's (published: SGD 0.2 constant; adam: 0.01 cosine)", minimum=0, maximum=10, nullable=True),
    "anpEps": Param(0.4, "float", "bound eps of the multiplicative BN perturbations (official: 0.4); 0 = no perturbation", minimum=0, maximum=1),
    "anpSteps": Param(1, "int", "signed-gradient ascent steps on the perturbation per mask step, each of size anpEps / anpSteps (official: 1)", minimum=1, maximum=100),
    "anpAlpha": Param(0.2, "float", "trade-off alpha: weight of the natural loss, 1 - alpha on the perturbed loss (T&R appendix: 0.2 on CIFAR-10, 0.1 on GTSRB)", minimum=0, maximum=1),
    "pruneThreshold": Param(None, "float", "prune channels whose mask is below this fixed value; null = choose it on the holdout (largest grid value within maxAccuracyDrop)", minimum=0, maximum=1, nullable=True),
    "pruneThresholdStep": Param(0.05, "float", "spacing of the threshold grid searched on the holdout (official sweep: 0.05)", minimum=0.001, maximum=1),
    "pruneMaxThreshold": Param(0.9, "float", "largest threshold of the grid (official sweep: 0.90)", minimum=0, maximum=1),
    "maxAccuracyDrop": Param(0.1, "float", "largest relative drop of holdout accuracy the chosen threshold may cause (BackdoorBench acc_ratio: 0.1)", minimum=0, maximum=1),
    "pruneBias": Param(False, "bool", "also zero the BN shift of pruned channels (the official code zeroes the scale only, the quantity the masks multiply)"),
    "evalEvery": Param(10, "int", "evaluate CA/ASR of the masked model every N passes (reporting only, never selection); 0 = only at the end", minimum=0),
}


def norm_layers(model: nn.Module) -> list:
    """Every BN layer with a learnable scale and shift, in module order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.affine]


class NoisyBatchNorm:
    """Per-channel masks and bounded perturbations of every BN layer of `model`.

    While `attached()`, each BN computes gamma * m (+ dw when `perturbed`) and beta (* (1 + db)),
    with batch statistics in train mode and running statistics in eval mode, never updating them.
    """

    def __init__(self, model: nn.Module):
        self.layers = norm_layers(model)
        self.masks = [torch.ones_like(layer.weight, requires_grad=True) for layer in self.layers]
        self.weight_noise = [torch.zeros_like(layer.weight) for layer in self.layers]
        self.bias_noise = [torch.zeros_like(layer.weight) for layer in self.layers]
        self.perturbed = False

    @property
    def noise(self) -> list:
        return self.weight_noise + self.bias_noise

    @contextmanager
    def attached(self) -> Iterator["NoisyBatchNorm"]:
        for index, layer in enumerate(self.layers):
            layer.forward = partial(self._forward, index)  # instance attribute shadows the class's forward
        try:
            yield self
        finally:
            for layer in self.layers:
                del layer.forward

    def _forward(self, index: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        scale, shift = self.masks[index], 1.0
        if self.perturbed:
            scale = scale + self.weight_noise[index]
            shift = 1.0 + self.bias_noise[index]
        batch_stats = layer.training
        return F.batch_norm(
            x,
            None if batch_stats else layer.running_mean,
            None if batch_stats else layer.running_var,
            layer.weight * scale,
            layer.bias * shift,
            batch_stats,
            0.0,
            layer.eps,
        )

    @torch.no_grad()
    def clip_masks(self) -> None:
        for mask in self.masks:
            mask.clamp_(0.0, 1.0)

    def draw_noise(self, eps: float, generator: torch.Generator) -> None:
        for tensor in self.noise:
            tensor.copy_(uniform_in_box(tensor, eps, generator))

    def mask_values(self) -> torch.Tensor:
        return torch.cat([m.detach().flatten() for m in self.masks])

    def state_dict(self) -> list:  # the masks, as a checkpoint of the mask phase keeps them
        return [m.detach().cpu() for m in self.masks]

    @torch.no_grad()
    def load_state_dict(self, masks: Sequence[torch.Tensor]) -> None:
        for mask, saved in zip(self.masks, masks):
            mask.copy_(saved)  # in place: the optimiser holds these tensors


def perturb_adversarially(model, noisy: NoisyBatchNorm, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, generator: torch.Generator) -> None:
    """Draw the perturbation uniformly in the box, then `steps` signed-gradient steps up the CE."""
    noisy.draw_noise(eps, generator)
    noisy.perturbed = True
    for tensor in noisy.noise:
        tensor.requires_grad_(True)
    try:
        for _ in range(steps):
            loss = F.cross_entropy(model(x).float(), y)
            # allow_unused: a BN whose output the model discards (faithful WRN's channel-changing blocks) gets no gradient
            grads = torch.autograd.grad(loss, noisy.noise, allow_unused=True)
            signed_ascent_step(noisy.noise, [torch.zeros_like(t) if g is None else g for t, g in zip(noisy.noise, grads)], eps / steps, eps)
    finally:
        for tensor in noisy.noise:
            tensor.requires_grad_(False)
        noisy.perturbed = False


def mask_loss(model, noisy: NoisyBatchNorm, hp: dict):
    eps, steps, alpha = hp["anpEps"], hp["anpSteps"], hp["anpAlpha"]

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        noisy.clip_masks()  # the previous optimizer step may have left [0,1]
        terms = {}
        if eps > 0:
            perturb_adversarially(model, noisy, x, y, eps, steps, generator)
            noisy.perturbed = True
            terms["robust"] = F.cross_entropy(model(x).float(), y)
            noisy.perturbed = False
        terms["natural"] = F.cross_entropy(model(x).float(), y)
        total = alpha * terms["natural"] + (1 - alpha) * terms.get("robust", 0.0)  # official: no robust term without noise
        return total, {"total": total, **terms}

    return loss_fn


def threshold_grid(step: float, maximum: float) -> list:
    """step, 2*step, ... up to maximum (0, which prunes nothing, is the reference point)."""
    return [round(step * i, 10) for i in range(1, int(math.floor(maximum / step + 1e-9)) + 1)]


def choose_threshold(sweep: Sequence[tuple], reference_accuracy: float, max_drop: float) -> float:
    """The largest threshold whose holdout accuracy is at least (1 - max_drop) * reference; 0 (prune nothing) if none."""
    allowed = [threshold for threshold, accuracy in sweep if accuracy >= (1 - max_drop) * reference_accuracy]
    return max(allowed, default=0.0)


@torch.no_grad()
def prune_channels(layers: Sequence[nn.Module], masks: Sequence[torch.Tensor], threshold: float, prune_bias: bool) -> int:
    """Zero the BN scale (and shift, with prune_bias) of every channel whose mask is below `threshold`; returns how many."""
    pruned = 0
    for layer, mask in zip(layers, masks):
        below = mask < threshold
        layer.weight[below] = 0.0
        if prune_bias:
            layer.bias[below] = 0.0
        pruned += int(below.sum())
    return pruned


@contextmanager
def restored_norm_parameters(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Put every BN scale and shift back as they were on exit (for trying thresholds)."""
    saved = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer in layers]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, (weight, bias) in zip(layers, saved):
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)


def sweep_thresholds(ctx: RunContext, model, layers, masks, thresholds: Sequence[float], prune_bias: bool) -> list:
    """(threshold, holdout accuracy, channels pruned) for every threshold, the model left unchanged."""
    sweep = []
    for threshold in thresholds:
        with restored_norm_parameters(layers):
            pruned = prune_channels(layers, masks, threshold, prune_bias)
            sweep.append((threshold, holdout_accuracy(ctx, model), pruned))
    return sweep


def mask_epochs(hp: dict, holdout_size: int) -> int:
    if hp["epochs"] is not None:
        return hp["epochs"]
    batch = hp["maskBatchSize"]
    steps = holdout_size // batch if holdout_size >= batch else 1  # the loop drops the last partial batch
    return max(1, math.ceil(hp["maskIterations"] / steps))


def optimise_masks(ctx: RunContext, runner: PhaseRunner, model, noisy: NoisyBatchNorm, epochs: int) -> dict:
    hp = ctx.hp

    def on_epoch_end(epoch: int) -> dict:
        noisy.clip_masks()
        return {**epoch_metrics(ctx, model, epoch, epochs), "meanMask": float(noisy.mask_values().mean())}

    recipe, lr, weight_decay = MASK_RECIPE.resolve(hp, "maskLr")
    with noisy.attached():
        result = runner.run(Phase(
            name=STAGE,
            epochs=epochs,
            batch_size=hp["maskBatchSize"],
            lr=lr,
            weight_decay=weight_decay,
            recipe=recipe,
            data=ctx.device_data("holdout"),
            parameters=noisy.masks,
            loss_fn=mask_loss(model, noisy, hp),
            set_modes=model.train,  # batch statistics, as the official code (which then discards its running stats)
            saves={"model": model, "masks": noisy},
            augment=hp["augment"],  # official: random crop + flip
            on_epoch_end=on_epoch_end,
        ))
    noisy.clip_masks()
    return result


def prune_by_masks(ctx: RunContext, model, noisy: NoisyBatchNorm) -> dict:
    """Choose the threshold (fixed, or on the holdout) and prune the channels whose mask is below it."""
    hp = ctx.hp
    masks = [m.detach() for m in noisy.masks]
    reference = holdout_accuracy(ctx, model)
    sweep = sweep_thresholds(ctx, model, noisy.layers, masks, threshold_grid(hp["pruneThresholdStep"], hp["pruneMaxThreshold"]), hp["pruneBias"])
    fixed = hp["pruneThreshold"]
    threshold = fixed if fixed is not None else choose_threshold([(t, a) for t, a, _ in sweep], reference, hp["maxAccuracyDrop"])
    pruned = prune_channels(noisy.layers, masks, threshold, hp["pruneBias"])
    return {
        "threshold": threshold, "rule": "fixed" if fixed is not None else "holdout", "prunedChannels": pruned,
        "totalChannels": int(sum(m.numel() for m in masks)), "holdoutAccuracyUnpruned": reference,
        "sweep": [{"threshold": t, "holdoutAccuracy": a, "prunedChannels": n} for t, a, n in sweep],
    }


@METHODS.register(
    "ANP",
    description="Adversarial Neuron Pruning: find the BN channels most sensitive to adversarial perturbation on the clean holdout and prune them",
    kind="post-training",
    hyperparameters=HYPERPARAMETERS,
    order=14,
)
def run(ctx: RunContext) -> dict:
    hp = ctx.hp
    runner = PhaseRunner(ctx)
    model, before = starting_model(ctx, runner)
    for p in model.parameters():
        p.requires_grad_(False)  # only the masks learn
    noisy = NoisyBatchNorm(model)
    if not noisy.layers:
        raise SpecError("data.initModel", "ANP prunes BatchNorm channels and this model has none (e.g. a DP-SGD GroupNorm model)")
    epochs = mask_epochs(hp, len(ctx.device_data("holdout")))
    masked = optimise_masks(ctx, runner, model, noisy, epochs)
    pruning = runner.run(Step(PRUNE, lambda: prune_by_masks(ctx, model, noisy)))
    for p in model.parameters():
        p.requires_grad_(True)
    final = evaluate(ctx, model)
    return {
        "model": model,
        "metrics": {
            **final, "mse": None, "beforeAsr": before.get("beforeAsr"), "beforeCa": before.get("beforeCa"),
            "pruneThreshold": pruning["threshold"], "prunedChannels": pruning["prunedChannels"], "totalChannels": pruning["totalChannels"],
            "holdoutAccuracyUnpruned": pruning["holdoutAccuracyUnpruned"], "holdoutAccuracy": holdout_accuracy(ctx, model),
        },
        "history": {STAGE: masked["history"], "pruning": pruning["sweep"]},
        "timings": {"pretrainSeconds": before.get("pretrainSeconds", 0.0), "maskSeconds": masked["seconds"]},
        "imagesPerSecond": {STAGE: masked["imagesPerSecond"]},
        "resolved": {"epochs": epochs, "thresholdRule": pruning["rule"], "pruneThreshold": pruning["threshold"], "recipe": {STAGE: MASK_RECIPE.describe(hp, "maskLr")}},
    }
