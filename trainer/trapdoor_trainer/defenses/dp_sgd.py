"""DP_SGD as a backdoor defense (Du, Jia & Song, ICLR 2020; T&R appendix B.2 / C.5).

Standard DP-SGD (Abadi et al. 2016) trained from scratch on the poisoned training set: every
sample's gradient is clipped to L2 norm C over all parameters together, Gaussian noise
N(0, σ²C²) is added to the sum, and the result is divided by the batch size. Poisoned samples
are a small minority, so bounding each sample's influence and drowning it in noise is meant to
keep the backdoor from being learned.

BatchNorm couples the samples of a batch, so per-sample gradients would be meaningless: the
model is built with GroupNorm (gcd(32, C) groups, Opacus's replacement) and exported as such
(config.json "norm": "group").

The step itself is a surrogate loss for the shared training loop (dp_sgd_step.py) built on exact
per-sample gradient norms (per_sample_gradients.py); this module is the method: its
hyper-parameters, its one training phase and the privacy it reports.

Privacy: ε for the job's δ from the RDP accountant in `privacy.py` with sampling rate
q = batchSize / N over every step taken. The loop draws shuffled fixed-size batches; the
accountant assumes Poisson sampling at the same rate, as Opacus and TF Privacy users commonly
do, so ε is the usual DP-SGD figure rather than a proof for this exact sampler.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..context import RunContext
from ..hyperparams import COMMON, Param
from ..phases import PhaseRunner
from ..recipes import OPTIMIZERS, Recipe
from ..privacy import SubsampledGaussianAccountant
from ..training import Phase
from .common import build_model, epoch_metrics, evaluate
from .dp_sgd_step import dp_sgd_loss
from .registry import METHODS

STAGE = "train"
# No recipe was published for DP-SGD as a backdoor defense (Du et al. released no code; T&R
# states only C = 1 and sigma in [0.5, 10]). SGD with momentum 0.9 is the DP-SGD literature's
# optimiser (Abadi et al. 2016; Tramer & Boneh 2021, momentum 0.9 on Fashion-MNIST). The rate was
# picked on the holdout of Fashion-MNIST clean data (15 200 training images, WRN-16-1 with
# GroupNorm, batch 256, C = 1, sigma = 1, 2 epochs): holdout accuracy 46.0 % at lr 0.5, 50.2 % at 2,
# 52.1 % at 4; 2 and 4 are within the 800-image holdout's noise (about 1.8 points), and 2 is the
# gentler. Adam at 1e-3 (the no-defense recipe) predicted one class (CA 10 %) in the first
# baselines table.
LR = 2.0
NORM = "group"

HYPERPARAMETERS = {
    "epochs": Param(200, "int", "training epochs (no-defense recipe; T&R states none for DP)", minimum=1, maximum=10000),
    **COMMON,
    "optimizer": Param("sgd", "str", "optimiser of the noisy gradient: sgd (with momentum, the DP-SGD literature's) or adam (the no-defense recipe's, which does not learn here: it rescales every noise-dominated coordinate to a full step)", choices=OPTIMIZERS),
    "momentum": Param(0.9, "float", "SGD momentum (optimizer sgd)", minimum=0, maximum=0.999),
    "lr": Param(LR, "float", "learning rate (cosine-annealed over the epochs)", minimum=0, maximum=100),
    "weightDecay": Param(0.0, "float", "L2 weight decay (0: the clipped, noised gradient is the whole update)", minimum=0, maximum=1),
    "clipNorm": Param(1.0, "float", "per-sample gradient clipping norm C over all parameters (T&R appendix B.2: 1)", minimum=1e-6),
    "noiseMultiplier": Param(
        1.0, "float", "noise multiplier sigma: noise std sigma*C on the clipped sum (T&R tuned it in [0.5, 10] without stating its choice)", minimum=0, maximum=100
    ),
    "delta": Param(1e-5, "float", "delta of the reported (epsilon, delta) privacy guarantee", minimum=1e-12, maximum=0.5),
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N epochs (reporting only, never selection); 0 = only at the end", minimum=0),
}


@METHODS.register(
    "DP_SGD",
    description="Differentially private SGD from scratch on the training set (per-sample clipping + Gaussian noise, GroupNorm model); reports epsilon",
    kind="training",
    hyperparameters=HYPERPARAMETERS,
    order=16,
)
def run(ctx: RunContext) -> dict:
    hp = ctx.hp
    model = build_model(ctx, with_decoder=False, norm=NORM).to(memory_format=torch.contiguous_format)
    data = ctx.device_data("train")
    batch_size = min(hp["batchSize"], len(data))
    sample_rate = batch_size / len(data)
    steps_per_epoch = data.steps(batch_size, drop_last=True)
    accountant = SubsampledGaussianAccountant(hp["noiseMultiplier"], sample_rate) if hp["noiseMultiplier"] > 0 else None

    def epsilon_after(epochs_done: int) -> tuple[Optional[float], Optional[float]]:
        """(epsilon, best RDP order) so far; None without noise, which gives no privacy at all."""
        if accountant is None:
            return None, None
        return accountant.epsilon(epochs_done * steps_per_epoch, hp["delta"])

    def on_epoch_end(epoch: int) -> dict:
        return {**epoch_metrics(ctx, model, epoch, hp["epochs"]), "epsilon": epsilon_after(epoch + 1)[0]}

    train = PhaseRunner(ctx).run(Phase(
        name=STAGE,
        epochs=hp["epochs"],
        batch_size=batch_size,
        lr=hp["lr"],
        weight_decay=hp["weightDecay"],
        recipe=Recipe(hp["optimizer"], momentum=hp["momentum"] if hp["optimizer"] == "sgd" else 0.0),
        data=data,
        parameters=list(model.parameters()),
        loss_fn=dp_sgd_loss(model, hp["clipNorm"], hp["noiseMultiplier"]),
        set_modes=model.train,
        saves={"model": model},
        augment=hp["augment"],
        on_epoch_end=on_epoch_end,
    ))
    epsilon, order = epsilon_after(hp["epochs"])
    return {
        "model": model,
        "metrics": {**evaluate(ctx, model), "mse": None, "epsilon": epsilon, "delta": hp["delta"]},
        "history": {STAGE: train["history"]},
        "timings": {"trainSeconds": train["seconds"]},
        "imagesPerSecond": {"train": train["imagesPerSecond"]},
        "resolved": {
            "norm": NORM,
            "groupNormGroups": "gcd(32, channels)",
            "sampleRate": sample_rate,
            "batchSize": batch_size,
            "steps": hp["epochs"] * steps_per_epoch,
            "rdpOrder": order,
            "accountant": "RDP of the Poisson-subsampled Gaussian mechanism, Canonne-Kamath-Steinke conversion",
            "sampling": "shuffled fixed-size batches; epsilon assumes Poisson sampling at sampleRate",
        },
        "config": {"norm": NORM},
    }
