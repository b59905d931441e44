"""NO_DEFENSE: ordinary training on train + holdout (the holdout is clean), T&R's recipe."""

from __future__ import annotations

from ..context import RunContext
from ..hyperparams import COMMON, Param
from ..training import Phase, run_phase
from .common import build_model, cross_entropy_loss, evaluate, holdout_accuracy, restore_history

HYPERPARAMETERS = {
    "epochs": Param(200, "int", "training epochs", minimum=1, maximum=10000),
    **COMMON,
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N epochs (reporting only, never selection); 0 = only at the end", minimum=0),
}


def run(ctx: RunContext) -> dict:
    hp = ctx.hp
    model = build_model(ctx, with_decoder=False)
    start_epoch = start_step = 0
    optimizer_state = None
    if ctx.resume_state is not None:
        model.load_state_dict(ctx.resume_state["model"])
        start_epoch, start_step = ctx.resume_state["epoch"], ctx.resume_state["step"]
        optimizer_state = ctx.resume_state["optimizer"]

    def on_epoch_end(epoch: int) -> dict:
        metrics = {"holdoutAccuracy": holdout_accuracy(ctx, model)}
        every = hp["evalEvery"]
        if every and ((epoch + 1) % every == 0 or epoch + 1 == hp["epochs"]):
            metrics.update(evaluate(ctx, model))
        return metrics

    phase = Phase(
        name="train",
        epochs=hp["epochs"],
        batch_size=hp["batchSize"],
        lr=hp["lr"],
        weight_decay=hp["weightDecay"],
        data=ctx.device_data("train+holdout"),
        parameters=list(model.parameters()),
        loss_fn=cross_entropy_loss(model),
        set_modes=model.train,
        augment=hp["augment"],
        on_epoch_end=on_epoch_end,
        checkpoint_state=lambda: {"model": model.state_dict()},
        history=restore_history(ctx, "train") or [],
    )
    run_phase(ctx, phase, start_epoch=start_epoch, start_step=start_step, optimizer_state=optimizer_state)
    return {
        "model": model,
        "metrics": {**evaluate(ctx, model), "mse": None},
        "history": {"train": phase.history},
        "timings": {"trainSeconds": phase.seconds},
        "imagesPerSecond": {"train": phase.images_per_second},
    }
