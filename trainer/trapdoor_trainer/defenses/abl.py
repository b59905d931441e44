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

Optimiser: every phase runs in the shared training loop, which uses Adam with a cosine schedule
per phase (the no-defense recipe: lr 1e-3, weight decay 5e-4). The official code and the T&R
author's fork use SGD (lr 0.1, momentum 0.9, weight decay 1e-4) with constant or step learning
rates. SGD learning rates do not carry over to Adam, so `lr` is the no-defense one; `unlearnLr`
keeps ABL's number, 5e-4, which on a Fashion-MNIST check (11 400 images, BadNet-grid, WRN-16-1,
5 isolation + 2 fine-tune epochs, 114 isolated, all poisoned) removed the most backdoor of the
values tried (ASR 100 % -> 2 %, CA 85 % -> 68 %; 1e-4: ASR 24 %, CA 75 %; 1e-5: ASR 47 %, CA 75 %).
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
from ..training import Phase, run_phase
from .common import build_model, epoch_metrics, evaluate, restore_history, resume_for
from .registry import METHODS
from .trap_signals import isolation_quality

ISOLATION, FINETUNE, UNLEARN = "isolation", "finetune", "unlearn"

HYPERPARAMETERS = {
    "epochs": Param(10, "int", "isolation-phase epochs: LGA training from scratch (official ABL and the T&R author's fork: 10; BackdoorBench/BackdoorBox: 20)", minimum=1, maximum=10000),
    **COMMON,
    "batchSize": Param(64, "int", "batch size of every phase (the T&R author's ABL fork: 64)", minimum=1, maximum=65536),
    "gamma": Param(0.5, "float", "LGA flooding level: the isolation loss is sign(CE - gamma) * CE", minimum=0),
    "isolationRatio": Param(0.01, "float", "fraction of the training set isolated as poisoned (lowest loss after isolation)", minimum=0, maximum=0.5),
    "finetuneEpochs": Param(60, "int", "epochs of CE fine-tuning on the non-isolated samples before unlearning; 0 skips it (ABL's finetuning_epochs: 60)", minimum=0, maximum=10000),
    "unlearnEpochs": Param(5, "int", "epochs of gradient ascent on the isolated samples (ABL: 5)", minimum=0, maximum=1000),
    "unlearnLr": Param(5e-4, "float", "learning rate of the unlearning ascent (ABL: 5e-4 with SGD; here Adam, cosine-annealed over the unlearning epochs)", minimum=0, maximum=10),
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


def _train(ctx: RunContext, model, name: str, epochs: int, data: DeviceData, loss_fn, lr: float, augment: str, carried: dict, unlearning: bool = False) -> Phase:
    """One ABL phase in the shared loop; resumes when the job's checkpoint is from this phase.
    `carried` (isolated indices, earlier phases' results) rides along in every checkpoint.
    Unlearning keeps the isolated set's last partial batch (it is small) and leaves BatchNorm's
    running statistics as its train-mode ascent left them, as the official code does; the other
    phases get exact statistics at their end."""
    hp = ctx.hp
    resume = resume_for(ctx, name)

    def on_epoch_end(epoch: int) -> dict:
        metrics = epoch_metrics(ctx, model, epoch, epochs)
        return metrics

    phase = Phase(
        name=name,
        epochs=epochs,
        batch_size=hp["batchSize"],
        lr=lr,
        weight_decay=hp["weightDecay"],
        data=data,
        parameters=list(model.parameters()),
        loss_fn=loss_fn,
        set_modes=model.train,
        augment=augment,
        on_epoch_end=on_epoch_end,
        checkpoint_state=lambda: {"model": model.state_dict(), "abl": carried},
        drop_last=not unlearning,
        model=None if unlearning else model,
        history=restore_history(ctx, name) or [],
    )
    start = (resume["epoch"], resume["step"], resume["optimizer"]) if resume else (0, 0, None)
    run_phase(ctx, phase, start_epoch=start[0], start_step=start[1], optimizer_state=start[2])
    carried["history"][name] = phase.history
    carried["timings"][f"{name}Seconds"] = phase.seconds
    carried["imagesPerSecond"][name] = phase.images_per_second
    return phase


def isolate(ctx: RunContext, model) -> tuple[np.ndarray, dict]:
    """Score the training set with the isolation model and pick the lowest-loss samples."""
    losses = per_sample_losses(model, ctx.device_data("train"), ctx.hp["evalBatchSize"], ctx.amp_dtype)
    isolated = lowest_loss_indices(losses, ctx.hp["isolationRatio"])
    return isolated, {"isolatedCount": int(len(isolated)), **isolation_quality(isolated, ctx.data.train.poison_mask)}


@METHODS.register(
    "ABL",
    description="Anti-Backdoor Learning: train with a loss floor, isolate the 1 % lowest-loss training samples as poisoned, then unlearn them by gradient ascent",
    kind="training",
    hyperparameters=HYPERPARAMETERS,
    order=15,
)
def run(ctx: RunContext) -> dict:
    hp = ctx.hp
    model = build_model(ctx, with_decoder=False)
    resume = ctx.resume_state
    stage = resume.get("stage") if resume is not None else None
    if stage in (FINETUNE, UNLEARN):
        model.load_state_dict(resume["model"])
        carried = resume["abl"]
    else:
        if stage == ISOLATION:
            model.load_state_dict(resume["model"])
        carried = {"isolated": [], "metrics": {}, "history": {}, "timings": {}, "imagesPerSecond": {}}
        _train(ctx, model, ISOLATION, hp["epochs"], ctx.device_data("train"), lga_loss(model, hp["gamma"]), hp["lr"], "none", carried)
        isolated_model = evaluate(ctx, model)
        isolated, quality = isolate(ctx, model)
        carried["isolated"] = isolated.tolist()
        carried["metrics"].update({"isolationAsr": isolated_model["asr"], "isolationCa": isolated_model["ca"], **quality})

    isolated = np.asarray(carried["isolated"], dtype=np.int64)
    if stage != UNLEARN:
        if hp["finetuneEpochs"] > 0:
            rest = np.setdiff1d(np.arange(len(ctx.data.train)), isolated)
            _train(ctx, model, FINETUNE, hp["finetuneEpochs"], _subset(ctx, rest), cross_entropy(model), hp["lr"], hp["augment"], carried)
        before = evaluate(ctx, model)
        carried["metrics"].update({"beforeUnlearnAsr": before["asr"], "beforeUnlearnCa": before["ca"]})
    if hp["unlearnEpochs"] > 0 and len(isolated) > 0:
        _train(ctx, model, UNLEARN, hp["unlearnEpochs"], _subset(ctx, isolated), ascent_loss(model), hp["unlearnLr"], "none", carried, unlearning=True)

    return {
        "model": model,
        "metrics": {**evaluate(ctx, model), "mse": None, **carried["metrics"]},
        "history": carried["history"],
        "timings": carried["timings"],
        "imagesPerSecond": carried["imagesPerSecond"],
        "resolved": {"optimizer": "adam (shared training loop), cosine per phase", "isolationAugment": "none", "unlearnAugment": "none", "finetuneAugment": hp["augment"]},
    }
