"""SCAN: the health report of a training set from the trap and the probe alone, no model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_cli import FAST, result_of, run, write_spec
from trapdoor_trainer.defenses.registry import get_method
from trapdoor_trainer.defenses.scan import trap_epochs

from synthetic import write_job_datasets

SCAN = {"trapEpochs": 4, "probeEpochs": 20, "batchSize": FAST["batchSize"], "lr": FAST["lr"]}


def scan_spec(tmp_path, data, hp):
    spec = json.loads(write_spec(tmp_path, data, "SCAN", hp).read_text())
    # What the service sends: no test or ASR set of its own; the holdout stands in as the test set.
    spec["data"] = {"train": data["train"], "holdout": data["holdout"], "test": data["holdout"]}
    del spec["target"]
    path = tmp_path / "scan.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def poisoned_scan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan")
    data = write_job_datasets(tmp / "data", seed=6, ratio=0.25)
    code, events, err = run(scan_spec(tmp, data, SCAN), tmp / "work")
    assert code == 0, err
    return data, events, tmp / "work"


def test_budgets_take_their_share_of_the_tnr_stage1_epochs():
    resolve = get_method("SCAN").resolve
    assert trap_epochs(resolve({})) == 7  # a quarter of a default T&R run's 30, rounded down
    assert trap_epochs(resolve({"budget": "THOROUGH"})) == 15
    assert resolve({})["tnrStage1Epochs"] == get_method("TRAP_AND_REPLACE").resolve({})["stage1Epochs"]
    assert trap_epochs(resolve({"budget": "FAST", "tnrStage1Epochs": 6})) == 1  # rounded down
    assert trap_epochs(resolve({"budget": "THOROUGH", "tnrStage1Epochs": 7})) == 3
    assert trap_epochs(resolve({"budget": "THOROUGH", "tnrStage1Epochs": 1})) == 1
    assert trap_epochs(resolve({"budget": "THOROUGH", "trapEpochs": 7})) == 7


def test_a_scan_runs_only_the_trap_and_the_probe_and_writes_no_model(poisoned_scan):
    _, events, workdir = poisoned_scan
    stages = {e["stage"] for e in events if e["type"] == "progress"}
    assert stages == {"isolate", "isolate-probe"}
    artifacts = {(e["kind"], e["path"]) for e in events if e["type"] == "artifact"}
    assert artifacts == {("health", "health.json"), ("health", "health.png"), ("health", "health_scores.npy")}
    assert not (workdir / "model.safetensors").exists()
    result = result_of(events)
    assert result["ca"] is None and result["asr"] is None and result["trapEpochs"] == 4
    assert 0.25 < result["trapHoldoutCa"] <= 1.0  # above chance (4 classes)


def test_a_scan_names_the_target_of_a_poisoned_set_and_ranks_its_poisons_first(poisoned_scan):
    data, events, workdir = poisoned_scan
    report = json.loads((workdir / "health.json").read_text())
    assert report["verdict"] == "poisoned" and report["likelyTarget"] == 0, report["evidence"]
    assert result_of(events)["verdict"] == "poisoned"
    mask = np.load(data["train"] + "/poison_mask.npy")
    scores = np.load(workdir / "health_scores.npy")
    assert scores.shape == mask.shape
    top = np.argsort(-scores, kind="stable")[: int(mask.sum())]
    assert mask[top].mean() >= 0.9
    assert list(top[:200]) == report["suspicious"]
    assert report["calibration"] is None  # measured on T&R's isolation trap, not the scan's shorter one


def test_a_scan_of_clean_data_does_not_call_it_poisoned(tmp_path):
    data = write_job_datasets(tmp_path / "data", seed=5, ratio=0.0)
    code, events, err = run(scan_spec(tmp_path, data, SCAN), tmp_path / "work")
    assert code == 0, err
    report = json.loads((tmp_path / "work" / "health.json").read_text())
    assert report["verdict"] != "poisoned" and report["likelyTarget"] is None
