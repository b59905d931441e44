"""ABL, Anti-Backdoor Learning (Li et al., NeurIPS 2021), from scratch on the poisoned training set.

Poisoned samples are learned much faster than clean ones, so their loss drops first:
1. isolation: train with the LGA loss sign(L − γ)·L on the batch-mean CE L (gradient descent
   while L > γ, ascent below it), which holds clean samples near γ while the backdoor's samples
   fall well below (the official default, Flooding |L − γ| + γ, has the same gradient); no
   augmentation, as in the official code;
2. isolate: per-sample CE in eval mode over the whole training set; the lowest-loss
   `isolationRatio` are the presumed-poisoned set;
3. fine-tune (optional, `finetuneEpochs`): plain CE on the other samples, with the job's
   augmentation (ABL adds Cutout, which the shared loop does not have);
4. unlearn: gradient ascent (minimise −CE) on the isolated samples, no augmentation.

Optimiser (`recipe`): by default the official one, Nesterov SGD (momentum 0.9, weight decay
1e-4) in every phase [bboylyg/ABL config.py, backdoor_isolation.py, backdoor_unlearning.py]:
isolation at a constant 0.1, fine-tuning at 0.1 then 0.01 (the official 40-of-60-epoch drop, kept
as a share of `finetuneEpochs`), unlearning at a constant 5e-4. `recipe: "adam"` is what ran
before: Adam + cosine at the no-defense rate (1e-3, weight decay 5e-4) with unlearning at 5e-4,
which on a Fashion-MNIST check (11 400 images, BadNet-grid, WRN-16-1, 5 isolation + 2 fine-tune
epochs, 114 isolated, all poisoned) removed the most backdoor of the values tried (ASR 100 % -> 2 %,
CA 85 % -> 68 %; 1e-4: ASR 24 %, CA 75 %; 1e-5: ASR 47 %, CA 75 %).
The model stays in train mode while unlearning, as in the official code: BatchNorm then
normalises with the statistics of all-poisoned batches, which is much of what makes the ascent
bite (in eval mode the isolated samples' loss starts near 0; the same check left ASR at 100 % at
1e-4 and collapsed the model to chance at 5e-4).

Only the poisoned training set is trained on. The training set's poison mask, when the service
made the poisoning, is read only to report how precise the isolation was.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..context import RunContext
from ..data import DeviceData, to_float_nchw
from ..hyperparams import COMMON, Param
from ..metrics import autocast_for
from ..phases import PhaseRunner, Step
from ..recipes import PhaseRecipe, Recipe, recipe_param
from ..training import Phase
from .common import build_model, epoch_metrics, evaluate
from .registry import METHODS
from .trap_signals import isolation_quality

ISOLATION, FINETUNE, UNLEARN = "isolation", "finetune", "unlearn"  # the loop phases
_ABL_SGD = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True}
RECIPES = {
    ISOLATION: PhaseRecipe(Recipe(**_ABL_SGD, schedule="constant"), published_lr=0.1, published_weight_decay=1e-4),
    FINETUNE: PhaseRecipe(Recipe(**_ABL_SGD, schedule="step", drops=((2 / 3, 0.1),)), published_lr=0.1, published_weight_decay=1e-4),
    UNLEARN: PhaseRecipe(Recipe(**_ABL_SGD, schedule="constant"), published_lr=5e-4, published_weight_decay=1e-4, adam_lr=5e-4),
}
LR_KEYS = {ISOLATION: "lr", FINETUNE: "lr", UNLEARN: "unlearnLr"}

HYPERPARAMETERS = {
    "epochs": Param(10, "int", "isolation-phase epochs: LGA training from scratch (official ABL and the T&R author's fork: 10; BackdoorBench/BackdoorBox: 20)", minimum=1, maximum=10000),
    **COMMON,
    "recipe": recipe_param(
        "Nesterov SGD, momentum 0.9, weight decay 1e-4 in every phase (official ABL config.py): isolation at a constant 0.1, fine-tuning at 0.1 then 0.01 "
        "from two thirds of its epochs on (40 of 60), unlearning at a constant 5e-4"
    ),
    "lr": Param(None, "float", "learning rate of isolation and fine-tuning; null = the recipe's (published: SGD 0.1; adam: 1e-3 cosine)", minimum=0, maximum=10, nullable=True),
    "weightDecay": Param(None, "float", "L2 weight decay of every phase; null = the recipe's (published: 1e-4; adam: 5e-4)", minimum=0, maximum=1, nullable=True),
    "batchSize": Param(64, "int", "batch size of every phase (the T&R author's ABL fork: 64)", minimum=1, maximum=65536),
    "gamma": Param(0.5, "float", "LGA flooding level: the isolation loss is sign(CE - gamma) * CE", minimum=0),
    "isolationRatio": Param(0.01, "float", "fraction of the training set isolated as poisoned (lowest loss after isolation)", minimum=0, maximum=0.5),
    "finetuneEpochs": Param(60, "int", "epochs of CE fine-tuning on the non-isolated samples before unlearning; 0 skips it (ABL's finetuning_epochs: 60)", minimum=0, maximum=10000),
    "unlearnEpochs": Param(5, "int", "epochs of gradient ascent on the isolated samples (ABL: 5)", minimum=0, maximum=1000),
    "unlearnLr": Param(5e-4, "float", "learning rate of the unlearning ascent (ABL: 5e-4, both recipes)", minimum=0, maximum=10),
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N epochs (reporting only, never selection); 0 = only at the end", minimum=0),
}


def lga_loss(model, gamma: float):
    """Local gradient ascent: sign(L − γ)·L. Its gradient is +∇L above γ and −∇L below, so the
    batch loss is held near γ instead of being driven to zero."""

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        ce = F.cross_entropy(model(x).float(), y)
        loss = torch.sign(ce - gamma) * ce
        return loss, {"ce": ce, "lga": loss}

    return loss_fn


def ascent_loss(model):
    """Gradient ascent on CE: unlearn what the isolated samples taught."""

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        ce = F.cross_entropy(model(x).float(), y)
        return -ce, {"ce": ce}

    return loss_fn


def cross_entropy(model):
    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        ce = F.cross_entropy(model(x).float(), y)
        return ce, {"ce": ce}

    return loss_fn


@torch.no_grad()
def per_sample_losses(model, data: DeviceData, batch_size: int, amp_dtype=None) -> torch.Tensor:
    """CE of every sample in eval mode, no augmentation (as ABL scores its isolation)."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = to_float_nchw(data.images[start : start + batch_size])
        with autocast_for(data.device, amp_dtype):
            logits = model(x)
        out.append(F.cross_entropy(logits.float(), data.labels[start : start + batch_size], reduction="none"))
    return torch.cat(out)


def lowest_loss_indices(losses: torch.Tensor, ratio: float) -> np.ndarray:
    """Indices of the round(ratio·N) lowest losses, ascending by loss; ties go to the lower index."""
    count = int(round(ratio * losses.shape[0]))
    order = torch.sort(losses.detach().cpu(), stable=True).indices
    return order[:count].numpy()


def _subset(ctx: RunContext, indices: np.ndarray) -> DeviceData:
    train = ctx.data.train
    return DeviceData(train.images[indices], train.labels[indices], ctx.device)


def _phase(ctx: RunContext, model, name: str, epochs: int, data: DeviceData, loss_fn, augment: str, unlearning: bool = False) -> Phase:
    """One ABL loop phase. Unlearning keeps the isolated set's last partial batch (it is small)
    and leaves BatchNorm's running statistics as its train-mode ascent left them, as the official
    code does; the other phases get exact statistics at their end."""
    hp = ctx.hp
    recipe, lr, weight_decay = RECIPES[name].resolve(hp, LR_KEYS[name], "weightDecay")
    return Phase(
        name=name,
        epochs=epochs,
        batch_size=hp["batchSize"],
        lr=lr,
        weight_decay=weight_decay,
        recipe=recipe,
        data=data,
        parameters=list(model.parameters()),
        loss_fn=loss_fn,
        set_modes=model.train,
        saves={"model": model},
        augment=augment,
        on_epoch_end=lambda epoch: epoch_metrics(ctx, model, epoch, epochs),
        drop_last=not unlearning,
        model=None if unlearning else model,
    )


def isolate(ctx: RunContext, model) -> dict:
    """Score the training set with the isolation model and pick the lowest-loss samples."""
    scores = evaluate(ctx, model)
    losses = per_sample_losses(model, ctx.device_data("train"), ctx.hp["evalBatchSize"], ctx.amp_dtype)
    isolated = lowest_loss_indices(losses, ctx.hp["isolationRatio"])
    return {
        "isolated": isolated.tolist(), "isolationAsr": scores["asr"], "isolationCa": scores["ca"],
        "isolatedCount": int(len(isolated)), **isolation_quality(isolated, ctx.data.train.poison_mask),
    }


@METHODS.register(
    "ABL",
    description="Anti-Backdoor Learning: train with a loss floor, isolate the 1 % lowest-loss training samples as poisoned, then unlearn them by gradient ascent",
    kind="training",
    hyperparameters=HYPERPARAMETERS,
    order=15,
)
def run(ctx: RunContext) -> dict:
    hp = ctx.hp
    runner = PhaseRunner(ctx)
    model = build_model(ctx, with_decoder=False)
    loops = {ISOLATION: runner.run(_phase(ctx, model, ISOLATION, hp["epochs"], ctx.device_data("train"), lga_loss(model, hp["gamma"]), "none"))}
    isolation = runner.run(Step("isolate", lambda: isolate(ctx, model)))
    isolated = np.asarray(isolation["isolated"], dtype=np.int64)
    if hp["finetuneEpochs"] > 0:
        rest = np.setdiff1d(np.arange(len(ctx.data.train)), isolated)
        loops[FINETUNE] = runner.run(_phase(ctx, model, FINETUNE, hp["finetuneEpochs"], _subset(ctx, rest), cross_entropy(model), hp["augment"]))
    before = runner.run(Step("before-unlearn", lambda: evaluate(ctx, model)))
    if hp["unlearnEpochs"] > 0 and len(isolated) > 0:
        loops[UNLEARN] = runner.run(_phase(ctx, model, UNLEARN, hp["unlearnEpochs"], _subset(ctx, isolated), ascent_loss(model), "none", unlearning=True))

    return {
        "model": model,
        "metrics": {
            **evaluate(ctx, model), "mse": None, **{k: v for k, v in isolation.items() if k != "isolated"},
            "beforeUnlearnAsr": before["asr"], "beforeUnlearnCa": before["ca"],
        },
        "history": {name: loop["history"] for name, loop in loops.items()},
        "timings": {f"{name}Seconds": loop["seconds"] for name, loop in loops.items()},
        "imagesPerSecond": {name: loop["imagesPerSecond"] for name, loop in loops.items()},
        "resolved": {
            "recipe": {name: RECIPES[name].describe(hp, LR_KEYS[name], "weightDecay") for name in loops},
            "isolationAugment": "none", "unlearnAugment": "none", "finetuneAugment": hp["augment"],
        },
    }
