"""NO_DEFENSE: ordinary training on train + holdout (the holdout is clean), T&R's recipe."""

from __future__ import annotations

from ..context import RunContext
from ..hyperparams import COMMON, Param
from ..phases import PhaseRunner
from .common import evaluate, train_classifier
from .registry import METHODS

HYPERPARAMETERS = {
    "epochs": Param(200, "int", "training epochs", minimum=1, maximum=10000),
    **COMMON,
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N epochs (reporting only, never selection); 0 = only at the end", minimum=0),
}


@METHODS.register(
    "NO_DEFENSE",
    description="Ordinary training on the training set plus holdout (the reference every defense is compared with)",
    kind="training",
    hyperparameters=HYPERPARAMETERS,
    order=1,
)
def run(ctx: RunContext) -> dict:
    model, train = train_classifier(ctx, PhaseRunner(ctx), "train", ctx.hp["epochs"])
    return {
        "model": model,
        "metrics": {**evaluate(ctx, model), "mse": None},
        "history": {"train": train["history"]},
        "timings": {"trainSeconds": train["seconds"]},
        "imagesPerSecond": {"train": train["imagesPerSecond"]},
    }
