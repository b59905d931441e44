"""SCAN: the health report of a training set without training a defended model.

It runs only what the verdict needs, the first half of T&R's isolate-and-retrain: a trap whose
stem learns only to reconstruct (its small head fits every label, poisoned ones first) and a probe
head trained on the clean holdout over that stem. Every training sample is scored by how much
likelier the trap finds its label than the probe does, and the report is health.py's, with the
probe in the role of the final head. No stage 1 on the kept samples, no stage 2, no model.

Budgets, as shares of the T&R run the scan stands in for (`tnrStage1Epochs`, by default T&R's
own default, 30): FAST traps for a quarter of its stage-1 epochs (7 at the default, about as long
as T&R's isolation trap, whose verdict bench/EFFICACY.md calibrates), THOROUGH for half. A T&R run
also trains stage 1 on 85 % of the samples and a new head in stage 2, so a scan costs a fraction
of it (measured: bench/EFFICACY.md, "The scan").
"""

from __future__ import annotations

import dataclasses
import math

from ..context import RunContext
from ..hyperparams import COMMON, Param
from ..phases import PhaseRunner, Step
from . import tnr
from .health import write_health
from .registry import METHODS
from .trap_signals import suspicion_scores, training_set_view

BUDGET_SHARE = {"FAST": 0.25, "THOROUGH": 0.5}

HYPERPARAMETERS = {
    "budget": Param("FAST", "str", "FAST: trap for a quarter of tnrStage1Epochs; THOROUGH: half", choices=tuple(BUDGET_SHARE)),
    "tnrStage1Epochs": Param(tnr.VALIDATED_STAGE1_EPOCHS, "int", "stage-1 epochs of the T&R run the scan stands in for (the budget takes its share of them; default: T&R's)", minimum=1, maximum=10000),
    "trapEpochs": Param(None, "int", "epochs of the trap; null = the budget's share of tnrStage1Epochs", minimum=1, maximum=10000, nullable=True),
    "probeEpochs": Param(10, "int", "epochs of the probe head trained on the holdout over the trap's stem", minimum=1, maximum=10000),
    "lambda2": tnr.HYPERPARAMETERS["lambda2"],
    **COMMON,
    "stemEndBlock": tnr.HYPERPARAMETERS["stemEndBlock"],
    "faithfulWrn": tnr.HYPERPARAMETERS["faithfulWrn"],
}


def trap_epochs(hp: dict) -> int:
    """Rounded down: the scan's fixed costs (the probe, two passes over the training set) come on
    top of the trap, and rounding up would take a small run past its share (6 T&R epochs: a
    quarter is 1.5)."""
    return hp["trapEpochs"] or max(1, math.floor(BUDGET_SHARE[hp["budget"]] * hp["tnrStage1Epochs"]))


def as_tnr_context(ctx: RunContext) -> RunContext:
    """The context T&R's phase functions read: T&R's defaults under the scan's own settings
    (the same object for everything else, so data, events and checkpoints are shared)."""
    defaults = {name: param.default for name, param in tnr.HYPERPARAMETERS.items()}
    hp = {**defaults, **ctx.hp, "evalEvery": 0, "previewCount": 0}
    return dataclasses.replace(ctx, spec=dataclasses.replace(ctx.spec, hyperparameters=hp))


@METHODS.register(
    "SCAN",
    description="Scan a training set for poisoning without training a defended model (health report only; launched with scanDataset)",
    kind="scan",
    hyperparameters=HYPERPARAMETERS,
    order=90,
)
def run(ctx: RunContext) -> dict:
    view = as_tnr_context(ctx)
    runner = PhaseRunner(view)
    epochs = trap_epochs(ctx.hp)
    passed = tnr.trap_and_probe(view, runner, tnr.stage2_settings(view.hp), epochs, ctx.hp["probeEpochs"])
    trapped = passed["trappedView"]
    probe_view = runner.run(Step("scan-probe-view", lambda: training_set_view(view, passed["model"])))
    report = write_health(view, None, probe_view, {"trapPred": trapped["pred"], "scores": suspicion_scores(trapped, probe_view)})
    ctx.health_paths = view.health_paths
    trap, probe = passed["trap"], passed["probe"]
    likely = report["likelyTarget"]
    return {
        "model": None,
        "metrics": {
            "asr": None,
            "ca": None,
            "mse": trap["mse"],
            # The trap never trains on the holdout: its accuracy there is a clean, held-out figure.
            "trapHoldoutCa": trap["stage1Ca"],
            "verdict": report["verdict"],
            "likelyTarget": likely,
            "flaggedCount": report["evidence"]["flaggedCount"],
            "trapEpochs": epochs,
        },
        "history": {"isolate": trap["history"], "isolateProbe": probe["history"]},
        "timings": {"trapSeconds": trap["seconds"], "probeSeconds": probe["seconds"]},
        "imagesPerSecond": {"trap": trap["imagesPerSecond"], "probe": probe["imagesPerSecond"]},
    }
