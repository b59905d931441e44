"""T&R beyond the paper: the stem-CE scale, isolate-and-retrain, and the health report."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from test_cli import FAST, result_of, run, start, write_spec
from trapdoor_trainer import hyperparams
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.data import to_float_nchw
from trapdoor_trainer.defenses import tnr
from trapdoor_trainer.defenses.common import build_model
from trapdoor_trainer.defenses.health import CALIBRATION_FILE, FLAG_RATIO, health_report
from trapdoor_trainer.defenses.trap_signals import most_suspicious, suspicion_scores
from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.models.base import scale_gradient
from trapdoor_trainer.phases import PhaseRunner
from trapdoor_trainer.runner import load_job_data, pick_device
from trapdoor_trainer.safetensors import load_file
from trapdoor_trainer.spec import parse_spec

from synthetic import write_job_datasets


def test_scale_gradient_keeps_values_and_scales_gradients():
    x = torch.randn(5, 3, requires_grad=True)
    assert torch.equal(scale_gradient(x, 0.0), x) and not scale_gradient(x, 0.0).requires_grad  # no path back at all
    for scale in (0.25, 1.0):
        x.grad = None
        y = scale_gradient(x, scale)
        assert torch.equal(y, x)
        (y * torch.arange(3.0)).sum().backward()
        assert torch.allclose(x.grad, scale * torch.arange(3.0).expand(5, 3))


def context(job_datasets, tmp_path, **hp) -> RunContext:
    spec = parse_spec({
        "method": "TRAP_AND_REPLACE", "architecture": "small-cnn", "seed": 3, "device": "cpu", "target": 0,
        "data": {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]},
        "hyperparameters": {"stage1Epochs": 1, "stage2Epochs": 1, "batchSize": 128, "evalEvery": 0, "previewCount": 0, **hp},
    })
    return RunContext(spec=spec, workdir=tmp_path, device=pick_device("cpu"), emitter=Emitter(io.StringIO()), data=load_job_data(spec))


@pytest.mark.parametrize("scale, stem_moves", [(0.0, False), (1.0, True)])
def test_stem_ce_scale_zero_keeps_the_classification_loss_out_of_the_stem(job_datasets, tmp_path, scale, stem_moves):
    # With the reconstruction terms off, only CE could move the stem's weights.
    ctx = context(job_datasets, tmp_path, stemCeScale=scale, lambda1=0.0, lambda2=0.0, weightDecay=0.0)
    model = build_model(ctx, with_decoder=True)
    weights = {k: v.clone() for k, v in model.stem.named_parameters()}
    head = {k: v.clone() for k, v in model.head.named_parameters()}
    tnr.run_stage1(ctx, PhaseRunner(ctx), model)
    moved = [not torch.equal(v, weights[k]) for k, v in model.stem.named_parameters()]
    assert any(moved) == stem_moves and (all(moved) or not stem_moves)
    assert all(not torch.equal(v, head[k]) for k, v in model.head.named_parameters())  # the trap head always learns


def test_samples_labelled_the_left_out_label_are_reconstructed_but_not_classified(job_datasets, tmp_path):
    ctx = context(job_datasets, tmp_path)
    model = build_model(ctx, with_decoder=True)
    train, off = ctx.device_data("train"), 0
    x, y = to_float_nchw(train.images[:64]), train.labels[:64]
    assert 0 < int((y == off).sum()) < len(y)
    # In eval mode no sample's loss depends on another's: the CE is the mean over the others alone.
    model.eval()
    _, parts = tnr.stage1_loss(model, 1.0, 0.1, ce_off_label=off)(x, y, torch.Generator())
    counted = y != off
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(x[counted]), y[counted])
    assert torch.allclose(parts["ce"], expected, atol=1e-5) and not torch.allclose(parts["ce"], torch.nn.functional.cross_entropy(model(x), y))
    # A batch of the left-out label alone sends no classification gradient anywhere; the
    # reconstruction still trains the stem.
    model.train()
    only = y == off
    for lambda1, stem_learns in ((0.0, False), (1.0, True)):
        model.zero_grad()
        loss, _ = tnr.stage1_loss(model, lambda1, 0.0, ce_off_label=off)(x[only], y[only], torch.Generator())
        loss.backward()
        stem_grad = sum(float(p.grad.abs().sum()) for p in model.stem.parameters() if p.grad is not None)
        head_grads = [p.grad for p in model.head.parameters()]
        assert (stem_grad > 0) == stem_learns and all(g is not None and not g.any() for g in head_grads)


def test_suspicion_ranks_what_the_trap_fits_and_the_clean_head_rejects():
    trapped = {"labelLogProb": torch.log(torch.tensor([0.9, 0.9, 0.2, 0.99])), "pred": torch.zeros(4, dtype=torch.long)}
    clean = {"labelLogProb": torch.log(torch.tensor([0.8, 0.01, 0.01, 0.1])), "pred": torch.zeros(4, dtype=torch.long)}
    scores = suspicion_scores(trapped, clean)
    assert list(most_suspicious(scores, 4)) == [1, 2, 3, 0]  # log-ratios 4.5, 3.0, 2.3, 0.1
    assert list(most_suspicious(torch.zeros(3), 2)) == [0, 1]  # ties: lower index first


def views(labels: np.ndarray, trapped_pred: np.ndarray, flagged: np.ndarray) -> tuple[dict, dict]:
    """Views where `flagged` samples get a trapped/clean label-probability ratio above FLAG_RATIO."""
    trapped_logp = np.full(len(labels), math.log(0.9))
    clean_logp = np.where(flagged, math.log(0.9 / (2 * FLAG_RATIO)), math.log(0.8))
    trapped = {"pred": torch.as_tensor(trapped_pred), "labelLogProb": torch.as_tensor(trapped_logp)}
    clean = {"pred": torch.as_tensor(labels), "labelLogProb": torch.as_tensor(clean_logp)}
    return trapped, clean


def report_for(labels, holdout, trapped, clean) -> dict:
    return health_report(labels, holdout, 10, trapped["pred"], clean["pred"], suspicion_scores(trapped, clean))


def test_health_report_names_the_over_predicted_class_with_its_flagged_samples():
    rng = np.random.default_rng(0)
    holdout = np.repeat(np.arange(10), 100)
    labels = np.repeat(np.arange(10), 1000)
    poisoned = rng.choice(np.flatnonzero(labels != 3), 1000, replace=False)
    labels[poisoned] = 3  # dirty-label poisoning towards class 3
    flagged = np.zeros(len(labels), bool)
    flagged[poisoned] = True
    flagged[rng.choice(len(labels), 200, replace=False)] = True  # a few hard clean samples, any class
    trapped, clean = views(labels, labels.copy(), flagged)
    report = report_for(labels, holdout, trapped, clean)
    assert report["verdict"] == "poisoned" and report["likelyTarget"] == 3
    assert report["evidence"]["overPrediction"][3] > 1.8
    top = report["suspicious"]
    assert len(top) == 200 and np.isin(top, np.flatnonzero(flagged)).all()


def test_health_report_does_not_call_balanced_data_with_scattered_flags_poisoned():
    rng = np.random.default_rng(1)
    holdout = np.repeat(np.arange(10), 100)
    labels = np.repeat(np.arange(10), 1000)
    flagged = np.zeros(len(labels), bool)
    flagged[rng.choice(len(labels), 800, replace=False)] = True
    trapped, clean = views(labels, labels.copy(), flagged)
    report = report_for(labels, holdout, trapped, clean)
    assert report["verdict"] == "clean" and report["likelyTarget"] is None
    # Over-prediction alone (a biased but honest head) is not enough either.
    biased = labels.copy()
    biased[rng.choice(np.flatnonzero(labels != 6), 900, replace=False)] = 6
    report = report_for(labels, holdout, views(labels, biased, flagged)[0], clean)
    assert report["verdict"] != "poisoned"


def test_a_moderate_flag_outlier_without_a_label_excess_is_inconclusive():
    # What clean Fashion-MNIST shows: one hard class (T-shirt vs shirt) gathers ~19 % of flags.
    rng = np.random.default_rng(3)
    holdout = np.repeat(np.arange(10), 100)
    labels = np.repeat(np.arange(10), 1000)
    flagged = np.zeros(len(labels), bool)
    flagged[rng.choice(np.flatnonzero(labels == 0), 190, replace=False)] = True
    report = report_for(labels, holdout, *views(labels, labels.copy(), flagged))
    assert report["verdict"] == "inconclusive" and report["likelyTarget"] is None
    flagged[rng.choice(np.flatnonzero((labels == 0) & ~flagged), 300, replace=False)] = True  # 49 %: strong on its own
    report = report_for(labels, holdout, *views(labels, labels.copy(), flagged))
    assert report["verdict"] == "poisoned" and report["likelyTarget"] == 0


def test_health_report_never_calls_a_skewed_label_distribution_clean():
    # Poisoned labels but no flags (the final head learned the shortcut too): not "clean".
    rng = np.random.default_rng(2)
    holdout = np.repeat(np.arange(10), 100)
    labels = np.repeat(np.arange(10), 1000)
    labels[rng.choice(np.flatnonzero(labels != 4), 1000, replace=False)] = 4
    trapped, clean = views(labels, labels.copy(), np.zeros(len(labels), bool))
    report = report_for(labels, holdout, trapped, clean)
    assert report["verdict"] == "inconclusive" and report["evidence"]["labelExcess"][4] > 1.8


@pytest.mark.parametrize(
    ("given", "epochs"),
    [({}, tnr.ISOLATE_EPOCHS_BOUND), ({"stage1Epochs": 30}, tnr.ISOLATE_EPOCHS_BOUND), ({"stage1Epochs": 4}, 4), ({"stage1Epochs": 30, "isolateEpochs": 30}, 30)],
)
def test_the_isolation_trap_stops_at_its_bound_unless_asked_for_more(given, epochs):
    # A long stage 1 (the paper's 200 epochs) must not train the isolation trap as long.
    hp = tnr.HYPERPARAMETERS
    assert tnr.isolation_epochs(hyperparams.resolve(hp, given)) == epochs


EFFICACY = Path(__file__).resolve().parents[2] / "bench" / "efficacy"
DEVELOPMENT_ATTACKS = ("badnet_grid", "blend", "sig")
REPORTING_ONLY = ("evalEvery", "previewCount")


@pytest.fixture(scope="module")
def committed():
    """bench/efficacy/committed.py: the committed cells and what each of them ran."""
    spec = importlib.util.spec_from_file_location("bench_committed", EFFICACY / "committed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs_the_defaults(committed, record: dict) -> bool:
    """Whether a committed efficacy cell trained what a launch with no hyper-parameters trains: the
    same resolved values (options the cell does not name as they ran then), the isolation trap's
    length and stage 2's rule as it takes effect on the set the cell ran on (a set called poisoned
    never runs the rules for other sets, and the other way round)."""
    hp = record["cell"]["hyperparameters"]
    try:
        given = hyperparams.resolve(tnr.HYPERPARAMETERS, committed.ran_hyperparameters(hp))
    except SpecError:  # an option the trainer no longer has
        return False
    default = hyperparams.resolve(tnr.HYPERPARAMETERS, {})
    same = all(given[k] == default[k] for k in default if k not in (*REPORTING_ONLY, "isolateEpochs", *committed.RULE_KEYS))
    return same and tnr.isolation_epochs(given) == tnr.isolation_epochs(default) and committed.ran_rules(record, committed.hp_rules(default))


def default_cells(committed, cells: list[dict], attack: str) -> list[dict]:
    """The committed T&R cells of `attack`, seed 0, that ran a launch's defaults (runs_the_defaults)."""
    return [c for c in cells if c["cell"]["attack"] == attack and c["cell"]["method"] == "TRAP_AND_REPLACE"
            and c["cell"]["seed"] == 0 and runs_the_defaults(committed, c)]


def cell(hp: dict, verdict: str = "poisoned") -> dict:
    """A committed cell's record as the default check reads it."""
    return {"cell": {"hyperparameters": hp}, "result": {"isolationVerdict": verdict}}


def test_a_launch_with_no_hyperparameters_runs_what_the_study_validated(committed):
    # The defaults the API offers are ones the efficacy study ran on every development attack
    # and held under 5 % ASR (bench/EFFICACY.md, "Longer stage-1 runs"): changing a default
    # without committing its cells fails here.
    cells = committed.load("cpu")
    for attack in DEVELOPMENT_ATTACKS:
        ran = default_cells(committed, cells, attack)
        assert ran, f"no committed cell runs today's T&R defaults on {attack}"
        assert all(c["result"]["asr"] <= 0.05 for c in ran), (attack, [c["result"]["asr"] for c in ran])


def light_default_cells(committed, attack: str) -> list[dict]:
    """The committed default cells of `attack` (seed 0) on a set isolation did not call poisoned."""
    return [c for c in default_cells(committed, committed.load("cpu"), attack) if not tnr.called_poisoned(c["result"])]


def test_the_defaults_for_sets_not_called_poisoned_ran_on_clean_data_and_light_poison(committed):
    # The rules for a set isolation does not call poisoned apply to clean data and to poison too
    # light to be called: a launch's defaults must have a committed cell on each, the light poison
    # under 5 % ASR. Blend at 0.5 % aimed at class 3 is the one that failed a candidate rule at a
    # launch's 30 epochs (bench/EFFICACY.md, "What the default costs", tenth round).
    for attack in ("clean", "blend@0.005#3"):
        ran = light_default_cells(committed, attack)
        assert ran, f"no committed cell runs today's T&R defaults on {attack}"
        assert all(c["result"]["asr"] is None or c["result"]["asr"] <= 0.05 for c in ran), (attack, [c["result"]["asr"] for c in ran])


# Light poison isolation does not call poisoned, aimed at a class the network confuses with others
# (T-shirts, shirts): today's defaults let it through at a launch's 30 epochs (bench/EFFICACY.md,
# "Longer stage-1 runs", twelfth round). The cells stay committed; the check below is the open gap.
LIGHT_POISON_AT_A_CONFUSED_CLASS = ("blend@0.005", "blend@0.005#6")


def test_the_defaults_ran_on_light_poison_aimed_at_a_class_the_network_confuses(committed):
    for attack in LIGHT_POISON_AT_A_CONFUSED_CLASS:
        assert light_default_cells(committed, attack), f"no committed cell runs today's T&R defaults on {attack}"


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="known gap: 65.0 / 31.5 % ASR at 30 epochs (bench/EFFICACY.md, Longer stage-1 runs, twelfth round); "
                          "a default that holds it turns this into a failure, and the mark goes")
def test_the_defaults_hold_light_poison_aimed_at_a_class_the_network_confuses(committed):
    asr = {attack: [c["result"]["asr"] for c in light_default_cells(committed, attack)] for attack in LIGHT_POISON_AT_A_CONFUSED_CLASS}
    assert all(a <= 0.05 for values in asr.values() for a in values), asr


def test_the_default_check_sees_what_a_cell_ran(committed):
    today = {"stage1Epochs": tnr.VALIDATED_STAGE1_EPOCHS, "stage2Epochs": tnr.VALIDATED_STAGE2_EPOCHS, "isolateSizing": "grow",
             "stage1WhenPoisoned": "off-target", "stage2WhenPoisoned": "off-target", "stage2TargetWeight": 0.25, "stage2Overlay": 0.3,
             "stage2OverlayWhen": "poisoned"}
    assert runs_the_defaults(committed, cell({**today, "evalEvery": 0, "isolateEpochs": tnr.ISOLATE_EPOCHS_BOUND}))
    assert not runs_the_defaults(committed, cell({**today, "stage1Epochs": 6}))
    assert not runs_the_defaults(committed, cell({**today, "stage2Epochs": None}))  # the paper recipe's: as long as stage 1
    assert not runs_the_defaults(committed, cell({**today, "isolateEpochs": 30}))
    assert not runs_the_defaults(committed, cell({**today, "stage2TargetWeight": 0.5}))
    # A cell that does not name an option ran before it existed: the holdout head, fixed isolation,
    # stage 1 on every label.
    assert not runs_the_defaults(committed, cell({k: v for k, v in today.items() if k != "stage2WhenPoisoned"}))
    assert not runs_the_defaults(committed, cell({k: v for k, v in today.items() if k != "stage1WhenPoisoned"}))  # stage 1 on every label
    assert not runs_the_defaults(committed, cell({k: v for k, v in today.items() if k != "isolateSizing"}))
    assert not runs_the_defaults(committed, cell({k: v for k, v in today.items() if k != "stage2Overlay"}))  # stage 2 without the overlay
    # A rule counts where it took effect: another rule for sets not called poisoned changes nothing on a poisoned one.
    other = "holdout" if tnr.HYPERPARAMETERS["stage2WhenNotPoisoned"].default == "off-candidate" else "off-candidate"
    assert runs_the_defaults(committed, cell({**today, "stage2WhenNotPoisoned": other}))
    assert not runs_the_defaults(committed, cell({**today, "stage2WhenNotPoisoned": other}, verdict="inconclusive"))
    # The overlay counts where it applied: on every set in cells from before stage2OverlayWhen.
    before_the_switch = {k: v for k, v in today.items() if k != "stage2OverlayWhen"}
    assert runs_the_defaults(committed, cell(before_the_switch))
    assert not runs_the_defaults(committed, cell(before_the_switch, verdict="inconclusive"))


ISOLATE = {"stage1Epochs": 4, "stage2Epochs": 20, "isolateFraction": 0.1, "isolateEpochs": 4, "isolateProbeEpochs": 20, **FAST}


@pytest.fixture(scope="module")
def isolated_run(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolate")
    code, events, err = run(write_spec(tmp, job_datasets, "TRAP_AND_REPLACE", {**ISOLATE, "isolateSizing": "fixed"}), tmp / "work")
    assert code == 0, err
    return result_of(events), events, tmp / "work"


def flagged_count(workdir) -> int:
    """Samples the isolation flagged: health_scores.npy holds its scores when isolation ran."""
    return int((np.load(workdir / "health_scores.npy") > math.log(FLAG_RATIO)).sum())


def test_isolate_and_retrain_drops_the_poisoned_samples(isolated_run):
    result, events, _ = isolated_run
    assert result["isolatedCount"] == 200  # 10 % of 2000, whatever the evidence says ("fixed")
    assert result["isolationPrecision"] >= 0.9 and result["isolationRecall"] >= 0.9
    stages = [e["stage"] for e in events if e["type"] == "progress"]
    assert stages.index("isolate") < stages.index("isolate-probe") < stages.index("stage1") < stages.index("stage2")
    assert result["asr"] <= 0.1


def test_every_tnr_job_writes_a_health_report_as_artifacts(isolated_run):
    result, events, workdir = isolated_run
    report = json.loads((workdir / "health.json").read_text())
    assert report["verdict"] in ("poisoned", "inconclusive") and report["evidence"]["candidateClass"] == 0
    mask = np.load(json.loads((workdir / "metadata.json").read_text())["spec"]["data"]["train"] + "/poison_mask.npy")
    assert mask[report["suspicious"][:100]].mean() >= 0.9
    health = {(e["format"], e["path"]) for e in events if e["type"] == "artifact" and e["kind"] == "health"}
    assert health == {("json", "health.json"), ("png", "health.png"), ("npy", "health_scores.npy")}
    scores = np.load(workdir / "health_scores.npy")
    assert scores.dtype == np.float32 and scores.shape == mask.shape  # every training sample, in dataset order
    top = np.argsort(-scores, kind="stable")[:200]
    assert list(top) == report["suspicious"]
    assert (workdir / "health.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Ranked by the isolation pass, the report says how far its verdict can be trusted.
    assert report["calibration"] == json.loads(CALIBRATION_FILE.read_text())
    assert report["calibration"]["thresholds"] == report["evidence"]["thresholds"]


def test_evidence_sized_isolation_drops_only_the_flagged_samples_when_the_set_does_not_look_poisoned(job_datasets, tmp_path):
    # 4 classes at 10 % poison: the evidence is "inconclusive" (see the next test), so the
    # "evidence" sizing drops the flagged samples only; nearly all of them are the poison.
    given = {**ISOLATE, "isolateSizing": "evidence"}
    code, events, err = run(write_spec(tmp_path, job_datasets, "TRAP_AND_REPLACE", given), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["isolationVerdict"] == "inconclusive"
    assert 0 < result["isolatedCount"] == flagged_count(tmp_path / "work") <= 200
    assert result["isolationPrecision"] >= 0.9 and result["asr"] <= 0.1
    assert any("evidence says inconclusive" in e.get("message", "") for e in events if e["type"] == "log")


POLISH_UNLESS_POISONED = {"polishEpochs": 1, "polishWhen": "unless-poisoned"}


def test_polish_unless_poisoned_skips_only_sets_isolation_calls_poisoned():
    rule = {"polishEpochs": 3, "polishWhen": "unless-poisoned"}
    assert tnr.polishes(rule, {"isolationVerdict": "inconclusive"}) and tnr.polishes(rule, {"isolationVerdict": "clean"})
    assert not tnr.polishes(rule, {"isolationVerdict": "poisoned"})
    assert tnr.polishes(rule, None)  # no isolation, no verdict
    assert tnr.polishes({**rule, "polishWhen": "always"}, {"isolationVerdict": "poisoned"})
    assert not tnr.polishes({**rule, "polishEpochs": 0}, None)


def test_a_heavily_poisoned_set_is_called_poisoned_and_isolation_grows_with_the_poison(tmp_path):
    # 4 classes: 10 % poison lifts the target's label share only 1.4x, below the 10-class
    # thresholds; at 25 % both the flags and the label excess are unmistakable.
    data = write_job_datasets(tmp_path / "data", seed=6, ratio=0.25)
    # isolateFraction 0.1: 200 of the 500 poisoned samples; stage 2 as the paper's (the default's off-target rule: next test)
    given = {**ISOLATE, "stage2TrainShare": 0.5, "stage2WhenPoisoned": "holdout", **POLISH_UNLESS_POISONED}
    code, events, err = run(write_spec(tmp_path, data, "TRAP_AND_REPLACE", given), tmp_path / "work")
    assert code == 0, err
    report = json.loads((tmp_path / "work" / "health.json").read_text())
    assert report["verdict"] == "poisoned" and report["likelyTarget"] == 0, report["evidence"]
    # Called poisoned, the default ("grow") isolation drops more than isolateFraction: 1.25 x the
    # samples the target's label excess says were relabelled; and the new head learns from the
    # holdout alone, whatever stage2TrainShare asks.
    train, holdout = (np.load(f"{data[k]}/labels.npy") for k in ("train", "holdout"))
    relabelled = ((train == 0).mean() - (holdout == 0).mean()) * len(train)
    result = result_of(events)
    assert result["isolationVerdict"] == "poisoned" and result["isolatedCount"] == round(tnr.RELABELLED_MARGIN * relabelled) > 200
    assert result["isolationRecall"] >= 0.95
    assert "stage2TrainCount" not in result and not any("least suspicious" in e.get("message", "") for e in events if e["type"] == "log")
    assert "polish" not in {e.get("stage") for e in events} and "stage2Ca" not in result  # nor is it polished


def test_on_a_set_called_poisoned_the_likely_target_is_left_out_of_stage1s_labels_and_stage2s_training_samples(tmp_path):
    data = write_job_datasets(tmp_path / "data", seed=6, ratio=0.25)
    given = dict(ISOLATE)  # the default: stage1WhenPoisoned and stage2WhenPoisoned off-target, stage2TargetWeight below 1
    code, events, err = run(write_spec(tmp_path, data, "TRAP_AND_REPLACE", given), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["isolationVerdict"] == "poisoned" and result["stage1LeftOut"] == 0  # the label left out: the target
    logs = [e.get("message", "") for e in events if e["type"] == "log"]
    assert any("likely target 0 are reconstructed, left out of the classification loss" in m for m in logs)
    assert any("gets another of its images laid over it, weight up to 0.3" in m for m in logs)  # the overlay, on a set called poisoned
    # Left out of the labels, the target is a class the trapped head never predicts.
    assert result["stage1Ca"] <= 1 - (np.load(f"{data['test']}/labels.npy") == 0).mean() + 1e-6
    # Every poisoned sample carries the target's label, so none of the added ones is poisoned;
    # every kept sample of the other classes is added, the target's holdout images repeated.
    train, holdout = (np.load(f"{data[k]}/labels.npy") for k in ("train", "holdout"))
    off_target, classes = int((train != 0).sum()), int(train.max()) + 1
    assert off_target - result["isolatedCount"] <= result["stage2TrainCount"] < off_target and result["stage2TrainPoisoned"] == 0
    others = (int((holdout != 0).sum()) + result["stage2TrainCount"]) / (classes - 1)
    weight = tnr.HYPERPARAMETERS["stage2TargetWeight"].default
    assert weight < 1 and result["stage2TargetRepeats"] == round(weight * others / (holdout == 0).sum()) - 1 > 0
    assert any("not labelled the likely target 0" in e.get("message", "") for e in events if e["type"] == "log")
    assert result["asr"] <= 0.1


def test_clean_data_is_not_called_poisoned(tmp_path):
    clean = write_job_datasets(tmp_path / "data", seed=5, ratio=0.0)
    code, events, err = run(write_spec(tmp_path, clean, "TRAP_AND_REPLACE", {**ISOLATE, **POLISH_UNLESS_POISONED}), tmp_path / "work")
    assert code == 0, err
    report = json.loads((tmp_path / "work" / "health.json").read_text())
    assert report["verdict"] != "poisoned" and report["likelyTarget"] is None
    assert "polish" in {e.get("stage") for e in events}  # not called poisoned: polished
    # Not called poisoned, the default isolation drops isolateFraction: no more (nothing to grow
    # from), no less (low-ratio poison is mostly unflagged).
    result = result_of(events)
    assert result["isolationVerdict"] != "poisoned" and result["isolatedCount"] == 200 > flagged_count(tmp_path / "work")


def test_the_label_stage1_leaves_out_follows_the_verdict_and_the_options():
    defaults = {k: tnr.HYPERPARAMETERS[k].default for k in ("stage1WhenPoisoned", "stage1WhenNotPoisoned")}
    poisoned = {"isolationVerdict": "poisoned", "isolationTarget": 3, "isolationCandidate": 3}
    inconclusive = {"isolationVerdict": "inconclusive", "isolationTarget": None, "isolationCandidate": 5}
    assert tnr.stage1_off_label(defaults, poisoned) == 3  # the likely target
    assert tnr.stage1_off_label(defaults, inconclusive) is None  # by default stage 1 learns every label of a set not called poisoned
    assert tnr.stage1_off_label(defaults, None) is None  # no isolation, no verdict
    every_label = {"stage1WhenPoisoned": "all", "stage1WhenNotPoisoned": "all"}
    assert tnr.stage1_off_label(every_label, inconclusive) is None and tnr.stage1_off_label(every_label, poisoned) is None
    mixed = {"stage1WhenPoisoned": "all", "stage1WhenNotPoisoned": "off-candidate"}
    assert tnr.stage1_off_label(mixed, inconclusive) == 5 and tnr.stage1_off_label(mixed, poisoned) is None
    mixed = {"stage1WhenPoisoned": "off-target", "stage1WhenNotPoisoned": "all"}
    assert tnr.stage1_off_label(mixed, inconclusive) is None and tnr.stage1_off_label(mixed, poisoned) == 3


def test_on_a_set_not_called_poisoned_the_candidate_class_is_left_out_of_stage1s_labels_and_stage2s_training_samples(tmp_path):
    clean = write_job_datasets(tmp_path / "data", seed=5, ratio=0.0)
    weight = 0.5
    given = {**ISOLATE, "stage1WhenNotPoisoned": "off-candidate", "stage2WhenNotPoisoned": "off-candidate", "stage2CandidateWeight": weight}
    code, events, err = run(write_spec(tmp_path, clean, "TRAP_AND_REPLACE", given), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["isolationVerdict"] != "poisoned"
    candidate = result["stage2LeftOut"]
    logs = [e.get("message", "") for e in events if e["type"] == "log"]
    assert any(f"not labelled the candidate class {candidate}" in m for m in logs)
    # Stage 1 left the same class out of its labels: the trapped head never predicts it.
    assert result["stage1LeftOut"] == candidate
    assert any(f"candidate class {candidate} are reconstructed, left out of the classification loss" in m for m in logs)
    assert not any("laid over it" in m for m in logs)  # by default no overlay on a set not called poisoned
    assert result["stage1Ca"] <= 1 - (np.load(f"{clean['test']}/labels.npy") == candidate).mean() + 1e-6
    # Every kept sample of the other classes joins the holdout; the candidate's holdout images
    # are repeated to weigh stage2CandidateWeight x another class (not stage2TargetWeight).
    train, holdout = (np.load(f"{clean[k]}/labels.npy") for k in ("train", "holdout"))
    others_count, classes = int((train != candidate).sum()), int(train.max()) + 1
    assert others_count - result["isolatedCount"] <= result["stage2TrainCount"] <= others_count
    others = (int((holdout != candidate).sum()) + result["stage2TrainCount"]) / (classes - 1)
    assert result["stage2TargetRepeats"] == round(weight * others / (holdout == candidate).sum()) - 1 > 0


def fake_split(labels: np.ndarray, poison_mask=None):
    """A data split whose image i is the single pixel value i, so a test can tell which samples went where."""
    return type("Split", (), {"images": np.arange(len(labels), dtype=np.float32).reshape(-1, 1, 1, 1), "labels": labels, "poison_mask": poison_mask})


def fake_context(train, holdout, num_classes: int, hp=None):
    """What stage 2's data assembly reads from a RunContext: the splits, the device, a log and the hyper-parameters."""
    data = type("Data", (), {"train": train, "holdout": holdout, "num_classes": num_classes})
    return type("Ctx", (), {"data": data, "device": torch.device("cpu"), "emitter": Emitter(io.StringIO()), "hp": hp,
                            "device_data": lambda self, name: name})()


def class_sizes(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_stage2_data_repeats_the_left_out_class_to_its_weight_and_tops_up_a_class_isolation_thinned():
    train, holdout = fake_split(class_sizes([100, 100, 20, 100])), fake_split(class_sizes([10, 10, 10, 10]))
    ctx = fake_context(train, holdout, 4)
    chosen = np.flatnonzero(train.labels != 3)
    stage2, added = tnr.with_training_samples(ctx, chosen, balance=3, weight=0.5)
    counts = np.bincount(stage2.labels.cpu().numpy(), minlength=4)
    # Others: 110, 110 and 30 (class 2, under half their mean of 83.3, so x3); class 3's ten
    # holdout images x4 weigh about 0.5 x that mean. Classes 0 and 1 are left as they are.
    assert counts.tolist() == [110, 110, 90, 40]
    assert added == {"stage2TrainCount": 220, "stage2TargetRepeats": 3, "stage2LeftOut": 3, "stage2ClassesToppedUp": 1}
    # The repeated class brings its own samples (holdout and training), nothing of another class.
    images = stage2.images.cpu().numpy().ravel()
    assert set(images[stage2.labels.cpu().numpy() == 2]) == set(train.images.ravel()[train.labels == 2]) | set(holdout.images.ravel()[holdout.labels == 2])


def test_stage2_data_tops_up_thin_classes_when_asked_without_leaving_a_class_out():
    train, holdout = fake_split(class_sizes([100, 100, 20, 100])), fake_split(class_sizes([10, 10, 10, 10]))
    ctx = fake_context(train, holdout, 4)
    every = np.arange(len(train.labels))
    # The mean of all four classes is 90; class 2's 30 samples are under half of it, so x3.
    stage2, added = tnr.with_training_samples(ctx, every, top_up=True)
    assert np.bincount(stage2.labels.cpu().numpy(), minlength=4).tolist() == [110, 110, 90, 110]
    assert added == {"stage2TrainCount": 320, "stage2ClassesToppedUp": 1}
    stage2, added = tnr.with_training_samples(ctx, every)  # not asked: the classes as they come
    assert np.bincount(stage2.labels.cpu().numpy(), minlength=4).tolist() == [110, 110, 30, 110] and added == {"stage2TrainCount": 320}


def probe_plausible_context(hp: dict) -> tuple:
    """A 40-sample training set (classes 0-3, ten each) whose samples 0-4 are poisoned into class 3:
    the probe gives them 3 % for that label (their pictures show class 0); it also doubts samples
    10-11 (4 %, under half of chance's 25 %) and is unsure of 12-13 (13 %, over it)."""
    labels = class_sizes([10, 10, 10, 10])
    poison = np.zeros(40, dtype=bool)
    poison[:5] = True
    labels[:5] = 3
    probe_p = np.full(40, 0.9)
    probe_p[:5], probe_p[10:12], probe_p[12:14] = 0.03, 0.04, 0.13
    ctx = fake_context(fake_split(labels, poison), fake_split(class_sizes([3, 3, 3, 3])), 4, hp)
    kept = [i for i in range(40) if i not in (3, 20)]  # isolation dropped one poisoned and one clean sample
    isolation = {"isolationVerdict": "inconclusive", "isolationCandidate": 0, "isolationTarget": None, "kept": kept,
                 "probeLabelLogProb": torch.as_tensor(np.log(probe_p)), "scores": torch.zeros(40)}
    return ctx, isolation


def test_probe_plausible_stage2_adds_the_kept_samples_whose_label_the_probe_does_not_reject_and_no_poison():
    hp = {"stage2TrainShare": 0.0, "isolateSizing": "grow", "stage2WhenPoisoned": "off-target", "stage2TargetWeight": 0.25, "stage2WhenNotPoisoned": "probe-plausible"}
    ctx, isolation = probe_plausible_context(hp)
    stage2, added = tnr.stage2_data(ctx, isolation)
    # Kept and plausible: 5-9 (class 0), 12-19 (class 1; 10-11 rejected), 21-29 (class 2; 20 isolated), 30-39.
    assert added["stage2TrainCount"] == 5 + 8 + 9 + 10 and added["stage2TrainPoisoned"] == 0
    train_images = set(stage2.images.cpu().numpy().ravel().tolist()) - set(range(12))  # holdout images are 0-11
    assert train_images == set(range(12, 20)) | set(range(21, 40))
    # Not on a set called poisoned (its own rule applies), not with the holdout rule, nor without the probe's view.
    assert tnr.stage2_data(ctx, {**isolation, "isolationVerdict": "poisoned", "isolationTarget": 3})[1]["stage2LeftOut"] == 3
    assert tnr.stage2_data(probe_plausible_context({**hp, "stage2WhenNotPoisoned": "holdout"})[0], isolation) == ("holdout", {})
    assert tnr.stage2_data(ctx, {k: v for k, v in isolation.items() if k != "probeLabelLogProb"}) == ("holdout", {})
    # plausible-off-candidate: the same samples outside the candidate class (0), whose holdout images are repeated instead.
    ctx, isolation = probe_plausible_context({**hp, "stage2WhenNotPoisoned": "plausible-off-candidate", "stage2CandidateWeight": 1.0})
    stage2, added = tnr.stage2_data(ctx, isolation)
    assert added["stage2TrainCount"] == 8 + 9 + 10 and added["stage2TrainPoisoned"] == 0 and added["stage2LeftOut"] == 0
    assert set(stage2.images.cpu().numpy().ravel().tolist()) - set(range(12)) == set(range(12, 20)) | set(range(21, 40))


def test_a_run_with_probe_plausible_gives_stage2_the_kept_samples_but_not_the_poison_isolation_missed(job_datasets, tmp_path):
    code, events, err = run(write_spec(tmp_path, job_datasets, "TRAP_AND_REPLACE", {**ISOLATE, "isolateFraction": 0.08, "stage2WhenNotPoisoned": "probe-plausible"}), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["isolationVerdict"] != "poisoned"  # the rule is for sets not called poisoned
    kept_poisoned = 200 - round(result["isolatedCount"] * result["isolationPrecision"])  # 10 % poison, 8 % isolated
    # Most of the kept set joins the holdout, none of the poison isolation missed.
    assert kept_poisoned > 0 and result["stage2TrainPoisoned"] == 0
    assert 0.8 * (2000 - result["isolatedCount"]) <= result["stage2TrainCount"] <= 2000 - result["isolatedCount"] - kept_poisoned
    assert any("whose label the isolation probe does not reject" in e.get("message", "") for e in events if e["type"] == "log")
    assert result["asr"] <= 0.1


def test_stage2_may_learn_from_the_least_suspicious_training_samples(job_datasets, tmp_path):
    code, events, err = run(write_spec(tmp_path, job_datasets, "TRAP_AND_REPLACE", {**ISOLATE, "stage2TrainShare": 0.5}), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    # Half of the 2000 training samples join the holdout; none of them poisoned, and the backdoor stays out.
    assert result["stage2TrainCount"] == 1000 and result["stage2TrainPoisoned"] == 0
    assert any("least suspicious" in e.get("message", "") for e in events if e["type"] == "log")
    assert result["asr"] <= 0.1


@pytest.mark.parametrize(
    ("given", "message"),
    [({"isolateFraction": 0.0, "stage2TrainShare": 0.5}, "needs isolation"), ({"isolateFraction": 0.3, "stage2TrainShare": 0.8}, "at most 1 - isolateFraction (0.7)")],
)
def test_stage2_train_share_without_a_ranking_or_past_the_kept_samples_is_refused(job_datasets, tmp_path, given, message):
    code, _, err = run(write_spec(tmp_path, job_datasets, "TRAP_AND_REPLACE", {**ISOLATE, **given}), tmp_path / "work")
    error = json.loads(err.strip().splitlines()[-1])
    assert code == 2 and error["field"] == "hyperparameters.stage2TrainShare" and message in error["message"]


RESUME = {**ISOLATE, "stage1Epochs": 2, "stage2Epochs": 2, "isolateEpochs": 2, "isolateProbeEpochs": 3, "polishEpochs": 2, "polishBatchSize": 32}


@pytest.fixture(scope="module")
def straight_isolated_run(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    spec = write_spec(tmp, job_datasets, "TRAP_AND_REPLACE", RESUME, seed=11)
    code, events, err = run(spec, tmp / "work")
    assert code == 0, err
    return spec, events, tmp / "work"


@pytest.mark.parametrize("stop_stage", ["isolate-probe", "stage1", "polish"])
def test_isolation_runs_resume_to_identical_weights(straight_isolated_run, tmp_path, stop_stage):
    spec, straight_events, straight = straight_isolated_run
    proc = start(spec, tmp_path / "interrupted")
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "progress" and event["stage"] == stop_stage and event["epoch"] == 1:
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) == 3
    resumed = json.loads(spec.read_text())
    resumed["resumeFrom"] = str(tmp_path / "interrupted" / "checkpoints" / "latest.pt")
    (tmp_path / "resumed.json").write_text(json.dumps(resumed))
    code, events, err = run(tmp_path / "resumed.json", tmp_path / "resumed")
    assert code == 0, err
    assert next(e for e in events if e["type"] == "progress")["stage"] == stop_stage
    a, b = load_file(straight / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)
    assert result_of(events)["isolatedCount"] == result_of(straight_events)["isolatedCount"]
    assert json.loads((tmp_path / "resumed" / "health.json").read_text()) == json.loads((straight / "health.json").read_text())


def test_the_polish_fine_tunes_the_whole_network_and_the_report_judges_the_network_before_it(straight_isolated_run, tmp_path):
    spec, events, polished = straight_isolated_run
    unpolished = json.loads(spec.read_text())
    unpolished["hyperparameters"]["polishEpochs"] = 0
    (tmp_path / "unpolished.json").write_text(json.dumps(unpolished))
    code, plain_events, err = run(tmp_path / "unpolished.json", tmp_path / "plain")
    assert code == 0, err
    a, b = load_file(polished / "model.safetensors"), load_file(tmp_path / "plain" / "model.safetensors")
    unchanged = {k for k in a if a[k].equal(b[k]) and not k.endswith("num_batches_tracked")}
    assert unchanged == set(), unchanged  # stem and head both moved (same stage-2 start: same seed)
    result, plain = result_of(events), result_of(plain_events)
    assert result["stage2Ca"] == plain["ca"] and result["stage2Asr"] == plain["asr"]
    assert {e["lr"] for e in events if e["type"] == "progress" and e["stage"] == "polish"} == {0.01, 0.005}  # SGD + cosine over 2 epochs
    # the health report (and its calibration) describes the stage-2 network, polished or not
    assert json.loads((polished / "health.json").read_text()) == json.loads((tmp_path / "plain" / "health.json").read_text())
