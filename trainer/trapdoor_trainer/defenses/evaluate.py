"""EVALUATE: measure a model a user brought (or an earlier job's) without training anything.

CA on the clean test set, ASR on the triggered non-target test images when an ASR set (and its
target) is given, and the accuracy of every class. The model comes from `data.initModel` and is
required; nothing is exported (the job's result is its metrics).
"""

from __future__ import annotations

from ..context import RunContext
from ..errors import SpecError
from ..hyperparams import Param
from ..metrics import predict
from .common import evaluate, load_init_model
from .registry import METHODS

HYPERPARAMETERS = {
    "evalBatchSize": Param(1000, "int", "batch size for evaluation", minimum=1, maximum=65536),
}


@METHODS.register(
    "EVALUATE",
    description="Measure a model (uploaded, or an earlier job's): CA, ASR and per-class accuracy; launched with evaluateModel",
    kind="evaluation",
    hyperparameters=HYPERPARAMETERS,
    order=91,
)
def run(ctx: RunContext) -> dict:
    if ctx.spec.data.init_model is None:
        raise SpecError("data.initModel", "EVALUATE measures a given model: pass one")
    model = load_init_model(ctx)
    metrics = evaluate(ctx, model)
    test = ctx.device_data("test")
    predicted = predict(model, test, ctx.hp["evalBatchSize"], ctx.amp_dtype)
    per_class = []
    for c in range(ctx.data.num_classes):
        mine = test.labels == c
        count = int(mine.sum())
        per_class.append(None if count == 0 else float((predicted[mine] == c).float().mean()))
    return {
        "model": None,
        "metrics": {**metrics, "mse": None, "perClassAccuracy": per_class},
        "history": {},
        "timings": {},
        "imagesPerSecond": {},
    }
