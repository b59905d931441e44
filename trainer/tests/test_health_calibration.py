"""The health verdict's calibration: the file T&R reports carry is what the committed efficacy
cells give, and it vouches only for the thresholds it was measured with."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from trapdoor_trainer.defenses import health

REPO = Path(__file__).resolve().parents[2]
CALIBRATE = REPO / "bench" / "efficacy" / "calibrate.py"


@pytest.fixture(scope="module")
def calibrate():
    spec = importlib.util.spec_from_file_location("bench_calibrate", CALIBRATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_calibration_is_what_the_committed_cells_give():
    proc = subprocess.run([sys.executable, str(CALIBRATE), "--profile", "cpu", "--check"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO / "trainer"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_the_calibration_measures_todays_thresholds_out_of_sample():
    cal = health.calibration()
    assert cal["thresholds"] == {"flagRatio": health.FLAG_RATIO, **health.VERDICT}
    assert cal["fitErrors"] == 0 and "clean seed 0" in cal["fitOn"]
    out = cal["outOfSample"]
    assert out["cells"] == sum(g["cells"] for g in cal["groups"]) and all(g["name"] != "fit" for g in cal["groups"])
    assert out["falsePositiveRate"]["of"] + out["falseNegativeRate"]["of"] == out["cells"]


def test_changed_thresholds_lose_the_calibration(monkeypatch):
    assert health.calibration() is not None
    monkeypatch.setitem(health.VERDICT, "labelExcess", health.VERDICT["labelExcess"] + 0.1)
    assert health.calibration() is None


def cell(attack: str, seed: int, flagged: list, excess: list, over: list) -> dict:
    return {"cell": {"attack": attack, "seed": seed, "config": "default", "overrides": {}, "hyperparameters": {"stage1Epochs": 6}},
            "health": {"evidence": {"flaggedShare": flagged, "labelExcess": excess, "overPrediction": over, "rankingSource": "isolation"}}}


def test_errors_are_counted_against_the_truth_and_fit_cells_stay_out_of_the_rates(calibrate):
    quiet = [0.01, 0.01, 0.01, 0.01]
    records = [
        cell("clean", 0, quiet, [1.0] * 4, [1.0] * 4),  # fit: called clean
        cell("clean", 1, [0.02, 0.9, 0.02, 0.02], [1.0] * 4, [1.0] * 4),  # a strong flag outlier on clean data: a false positive
        cell("clean", 2, quiet, [1.0] * 4, [1.0] * 4),
        cell("blend@0.01", 0, quiet, [1.1, 1.0, 1.0, 1.0], [1.1, 1.0, 1.0, 1.0]),  # missed, called clean
        cell("blend#3", 0, [0.01, 0.01, 0.01, 0.6], [1.0, 1.0, 1.0, 2.0], [1.0, 1.0, 1.0, 2.0]),  # caught, target 3
        cell("smooth", 0, [0.01, 0.6, 0.01, 0.01], [1.0, 2.0, 1.0, 1.0], [1.0] * 4),  # caught, wrong target (1, not 0)
    ]
    cases = [calibrate.case(r) for r in calibrate.measured_cells(records)]
    cal = calibrate.calibration(cases, "cpu")
    assert cal["fitOn"] == ["clean seed 0"] and cal["fitErrors"] == 0
    out = cal["outOfSample"]
    assert out["cells"] == 5
    assert out["falsePositiveRate"] == {"rate": 0.5, "count": 1, "of": 2}
    assert out["cleanCalledClean"] == {"rate": 0.5, "count": 1, "of": 2}
    assert out["falseNegativeRate"] == {"rate": 0.3333, "count": 1, "of": 3}
    assert out["poisonedCalledClean"]["count"] == 1
    assert out["likelyTargetAccuracy"] == {"rate": 0.5, "count": 1, "of": 2}
    assert cal["outOfSampleAtLeast5Percent"]["falseNegativeRate"] == {"rate": 0.0, "count": 0, "of": 2}  # 1 % is reported apart
    assert {g["name"]: g["cells"] for g in cal["groups"]} == {
        "clean data, other seeds": 2, "held-out attacks": 1, "other ratios and targets, 5 % and over": 1, "other ratios and targets, under 5 %": 1,
    }
    json.dumps(cal)  # the report's section is plain JSON
