"""The defense-health report every T&R job writes (health.json + health.png): is the training
set poisoned, towards which class, and which samples — without knowing the trigger.

Evidence, per class c (holdout = the clean reference):
- overPrediction[c]: share of training samples the trapped head (the isolation trap's, when
  isolate-and-retrain ran) assigns to c, over c's share of the holdout labels. All-to-one dirty-label poisoning moves ~ratio of the set into the target's
  labels, and the trap fits them, so the target stands out (10 % poison: ~1.9 vs ~1.0).
- flagged[c]: share of training samples labelled c whose label the trapped head finds at least
  FLAG_RATIO times likelier than the clean-trained head does (trap_signals.suspicion_scores).
  Poisoned samples all carry the target label; on clean data flags are spread over classes
  that are hard to tell apart.
- labelExcess[c]: c's share of the training labels over its share of the holdout labels.
- agreement[c]: how often trapped and final heads agree on training samples labelled c.
The candidate class is the one with the most flags; "poisoned" needs its flags to stand out and
either to be strong or to come with an excess of its labels ("inconclusive" when they do not,
e.g. a hard class on clean data); no flag outlier and no skewed class is "clean"; thresholds are in VERDICT and were chosen on
the development attacks and on clean data (bench/EFFICACY.md), never on the test set.

A T&R report ranked by the isolation pass carries `calibration`: what the thresholds were fitted
on and their error rates on cells they were not fitted on (held-out attacks, other ratios, other
clean seeds), as bench/efficacy/calibrate.py measured them (CALIBRATION_FILE).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..context import RunContext
from ..png import image_grid, write_png
from .trap_signals import most_suspicious, suspicion_scores

FLAG_RATIO = 4.0  # trapped p(label) >= 4 x clean p(label)
VERDICT = {
    "flagMin": 0.10,  # a flag outlier: at least 10 % of the candidate's samples flagged ...
    "flagLift": 3.0,  # ... and at least 3 x the other classes' mean share (+ LIFT_FLOOR)
    "strongFlagShare": 0.35,  # an outlier this large is "poisoned" on its own (clean-label attacks)
    "labelExcess": 1.5,  # a smaller one needs the candidate's training label share 1.5 x its holdout share
    "cleanMaxSkew": 1.3,  # "clean": no outlier, and no class's label excess or over-prediction this high
}
LIFT_FLOOR = 0.01  # keeps the lift finite when other classes have no flags at all
TOP_SUSPICIOUS = 200
SCORES_FILE = "health_scores.npy"  # float32 (N,), log p_trapped(label) - log p_clean(label)
THUMBNAILS = 32
CALIBRATION_FILE = Path(__file__).with_name("health_calibration.json")


def class_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Label shares with one pseudo-count per class, so an empty class never divides by zero."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64) + 1.0
    return counts / counts.sum()


def judge(flagged: np.ndarray, label_excess: np.ndarray, over: np.ndarray) -> tuple[int, str, float]:
    """(candidate class, verdict, flag lift) from the per-class evidence; bench/efficacy re-derives
    verdicts of stored reports with it when the thresholds change."""
    flagged, label_excess, over = (np.asarray(v, dtype=np.float64) for v in (flagged, label_excess, over))
    # The flags pick the candidate (a small holdout makes label shares noisy, flags are not).
    candidate = int(np.argmax(flagged))
    lift = float(flagged[candidate] / (float(np.mean(np.delete(flagged, candidate))) + LIFT_FLOOR))
    outlier = bool(flagged[candidate] >= VERDICT["flagMin"] and lift >= VERDICT["flagLift"])
    # On clean Fashion-MNIST one class (T-shirt vs shirt) gathers ~19 % flags: an outlier, but
    # weaker than any poisoning measured (25-99 %); it takes a strong outlier, or dirty-label
    # poisoning's excess of target labels, to say "poisoned".
    confirmed = bool(flagged[candidate] >= VERDICT["strongFlagShare"] or label_excess[candidate] >= VERDICT["labelExcess"])
    # "clean" also needs the label shares and the trap's predictions to look like the holdout's:
    # when the final head learned the shortcut too (no isolation), poisons raise no flags, but
    # the target still carries the poisoned share of the labels.
    skewed = bool(max(label_excess.max(), over.max()) >= VERDICT["cleanMaxSkew"])
    if outlier:
        return candidate, ("poisoned" if confirmed else "inconclusive"), lift
    return candidate, ("inconclusive" if skewed else "clean"), lift


def flagged_samples(scores: torch.Tensor) -> np.ndarray:
    """Mask of the training samples whose label the trapped head finds FLAG_RATIO times likelier than the clean head."""
    return (scores > math.log(FLAG_RATIO)).numpy()


def class_evidence(labels: np.ndarray, holdout_labels: np.ndarray, num_classes: int, trapped_pred: torch.Tensor, scores: torch.Tensor) -> tuple:
    """(flagged mask, flaggedShare, labelExcess, overPrediction): what judge() reads, from the
    trapped head's predictions and the suspicion scores alone (no final model needed)."""
    over = class_shares(trapped_pred.numpy(), num_classes) / class_shares(holdout_labels, num_classes)
    flagged_mask = flagged_samples(scores)
    counts = np.bincount(labels, minlength=num_classes)
    flagged = np.bincount(labels[flagged_mask], minlength=num_classes) / np.maximum(counts, 1)
    label_excess = class_shares(labels, num_classes) / class_shares(holdout_labels, num_classes)
    return flagged_mask, flagged, label_excess, over


def health_report(
    labels: np.ndarray, holdout_labels: np.ndarray, num_classes: int, trapped_pred: torch.Tensor, final_pred: torch.Tensor, scores: torch.Tensor
) -> dict:
    """The report as a JSON-ready dict. `trapped_pred`/`final_pred`: the trapped and final heads'
    predictions on the training set; `scores`: suspicion_scores (trapped head vs a clean head)."""
    flagged_mask, flagged, label_excess, over = class_evidence(labels, holdout_labels, num_classes, trapped_pred, scores)
    counts = np.bincount(labels, minlength=num_classes)
    agree = trapped_pred.numpy() == final_pred.numpy()
    agreement = np.bincount(labels[agree], minlength=num_classes) / np.maximum(counts, 1)
    candidate, verdict, lift = judge(flagged, label_excess, over)
    top = most_suspicious(scores, min(TOP_SUSPICIOUS, len(scores)))
    return {
        "verdict": verdict,
        "likelyTarget": candidate if verdict == "poisoned" else None,
        "suspicious": [int(i) for i in top],
        "evidence": {
            "candidateClass": candidate,
            "overPrediction": [round(float(v), 4) for v in over],
            "flaggedShare": [round(float(v), 4) for v in flagged],
            "flagLift": round(min(lift, 1e6), 3),
            "agreement": [round(float(v), 4) for v in agreement],
            "labelExcess": [round(float(v), 4) for v in label_excess],
            "trainingLabelShare": [round(float(v), 4) for v in class_shares(labels, num_classes)],
            "holdoutLabelShare": [round(float(v), 4) for v in class_shares(holdout_labels, num_classes)],
            "flaggedCount": int(flagged_mask.sum()),
            "suspicionScores": [round(float(scores[i]), 4) for i in top],
            "thresholds": {"flagRatio": FLAG_RATIO, **VERDICT},
        },
    }


def summary_image(images: np.ndarray, report: dict, num_classes: int) -> np.ndarray:
    """Top row(s): the most suspicious training images, most suspicious first. Bottom: one bar
    per class, height = overPrediction (the 1.0 level is the grey line), the candidate in red."""
    top = report["suspicious"][:THUMBNAILS]
    thumbs = [images[i] for i in top]
    channels = images.shape[3] if images.ndim == 4 else 1
    rows = [thumbs[i : i + 8] for i in range(0, len(thumbs), 8)] or [[np.zeros(images.shape[1:], np.uint8)]]
    tiles = image_grid(rows)
    bar_w, height = 12, 64
    chart = np.full((height + 4, num_classes * (bar_w + 4) + 4, 3), 255, np.uint8)
    scale = height / max(2.0, max(report["evidence"]["overPrediction"]))
    for c, value in enumerate(report["evidence"]["overPrediction"]):
        h = int(round(value * scale))
        left = 4 + c * (bar_w + 4)
        colour = (200, 30, 30) if c == report["evidence"]["candidateClass"] else (60, 60, 60)
        chart[height - h + 2 : height + 2, left : left + bar_w] = colour
    chart[height + 2 - int(round(scale)), :] = (160, 160, 160)
    if channels == 1:
        tiles = np.repeat(tiles, 3, axis=2) if tiles.shape[2] == 1 else tiles
    width = max(tiles.shape[1], chart.shape[1])
    canvas = np.full((tiles.shape[0] + chart.shape[0], width, 3), 255, np.uint8)
    canvas[: tiles.shape[0], : tiles.shape[1]] = tiles if tiles.shape[2] == 3 else np.repeat(tiles, 3, axis=2)
    canvas[tiles.shape[0] :, : chart.shape[1]] = chart
    return canvas


def calibration() -> Optional[dict]:
    """The measured calibration of VERDICT; None when the thresholds changed since it was measured
    (a stale file must not vouch for thresholds it never saw)."""
    measured = json.loads(CALIBRATION_FILE.read_text())
    return measured if measured["thresholds"] == {"flagRatio": FLAG_RATIO, **VERDICT} else None


def write_health(ctx: RunContext, trapped: Optional[dict], final: dict, isolation: Optional[dict], calibrated: bool = False) -> dict:
    """Write health.json, health.png and health_scores.npy into the job's workdir and register them as artifacts.
    With isolate-and-retrain the ranking comes from the isolation pass, whose stem never learned
    from labels, so its clean probe is the sharper reference. `calibrated`: the report comes from
    the pass the calibration measured (T&R's isolation), so it carries that calibration."""
    train = ctx.data.train
    if isolation is not None:  # the isolation trap saw every sample, poisoned ones included
        trapped_pred, scores = isolation["trapPred"], isolation["scores"]
    else:
        trapped_pred, scores = trapped["pred"], suspicion_scores(trapped, final)
    report = health_report(train.labels, ctx.data.holdout.labels, ctx.data.num_classes, trapped_pred, final["pred"], scores)
    report["evidence"]["rankingSource"] = "isolation" if isolation is not None else "stage1"
    report["calibration"] = calibration() if calibrated and isolation is not None else None
    json_path = ctx.workdir / "health.json"
    json_path.write_text(json.dumps(report, indent=1))
    png_path = ctx.workdir / "health.png"
    write_png(png_path, summary_image(train.images, report, ctx.data.num_classes))
    # Every sample's score, in dataset order: the service ranks and pages them, and a
    # sanitize policy (drop the top fraction, a minimum score) reads them.
    scores_path = ctx.workdir / SCORES_FILE
    np.save(scores_path, scores.numpy().astype("<f4"), allow_pickle=False)
    ctx.health_paths = [json_path, png_path, scores_path]
    ctx.emitter.log(f"health: verdict {report['verdict']}, likely target {report['likelyTarget']}, {report['evidence']['flaggedCount']} samples flagged")
    return report
