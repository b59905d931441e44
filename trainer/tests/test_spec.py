"""Spec validation: every bad field is rejected with its name, defaults resolve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.spec import parse_spec

TRAINER_ROOT = Path(__file__).resolve().parents[1]


def base_spec(job_datasets: dict, **overrides) -> dict:
    spec = {
        "method": "TRAP_AND_REPLACE",
        "architecture": "small-cnn",
        "data": {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"]},
        "seed": 0,
        "device": "cpu",
    }
    spec.update(overrides)
    return spec


def test_defaults_resolve_to_the_paper_values_except_the_studied_ones(job_datasets):
    spec = parse_spec(base_spec(job_datasets))
    hp = spec.hyperparameters
    assert (hp["lambda1"], hp["lambda2"], hp["lr"], hp["weightDecay"], hp["batchSize"]) == (1.0, 0.1, 1e-3, 5e-4, 256)
    assert (hp["stage1Epochs"], hp["stage2Epochs"], hp["stemEndBlock"], hp["stage2Recipe"], hp["faithfulWrn"]) == (30, 10, 5, "paper", True)
    assert spec.architecture == "small-cnn" and spec.target is None


def test_integer_valued_floats_are_accepted_for_int_fields(job_datasets):
    spec = parse_spec(base_spec(job_datasets, hyperparameters={"stage1Epochs": 3.0, "lambda1": 1}))
    assert spec.hyperparameters["stage1Epochs"] == 3 and spec.hyperparameters["lambda1"] == 1.0


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"method": "MAGIC"}, "method"),
        ({"method": None}, "method"),
        ({"architecture": "vgg"}, "architecture"),
        ({"hyperparameters": {"lambda3": 1}}, "hyperparameters.lambda3"),
        ({"hyperparameters": {"lambda1": -1}}, "hyperparameters.lambda1"),
        ({"hyperparameters": {"lambda1": "ten"}}, "hyperparameters.lambda1"),
        ({"hyperparameters": {"stage1Epochs": 2.5}}, "hyperparameters.stage1Epochs"),
        ({"hyperparameters": {"stage1Epochs": True}}, "hyperparameters.stage1Epochs"),
        ({"hyperparameters": {"stemEndBlock": 3}}, "hyperparameters.stemEndBlock"),
        ({"hyperparameters": {"stage2Recipe": "mine"}}, "hyperparameters.stage2Recipe"),
        ({"hyperparameters": {"epochs": 3}}, "hyperparameters.epochs"),  # NO_DEFENSE's name, not T&R's
        ({"hyperparameters": []}, "hyperparameters"),
        ({"seed": -1}, "seed"),
        ({"seed": "1"}, "seed"),
        ({"device": "tpu"}, "device"),
        ({"resumeFrom": "/nonexistent/ckpt.pt"}, "resumeFrom"),
        ({"extra": 1}, "extra"),
        ({"data": None}, "data"),
        ({"data": {"train": "a", "holdout": "b"}}, "data.test"),
        ({"data": {"train": "a", "holdout": "b", "test": "c", "valid": "d"}}, "data.valid"),
        ({"target": -2}, "target"),
        ({"attack": {"name": "badnet_grid", "target": 0, "colour": 1}}, "attack.colour"),
        ({"attack": "badnet_grid"}, "attack"),
    ],
)
def test_bad_fields_are_named(job_datasets, overrides, field):
    with pytest.raises(SpecError) as info:
        parse_spec(base_spec(job_datasets, **overrides))
    assert info.value.field == field


def test_asr_test_set_requires_a_target(job_datasets):
    data = {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]}
    with pytest.raises(SpecError) as info:
        parse_spec(base_spec(job_datasets, data=data))
    assert info.value.field == "target"
    assert parse_spec(base_spec(job_datasets, data=data, target=0)).target == 0


def test_no_defense_takes_epochs(job_datasets):
    spec = parse_spec(base_spec(job_datasets, method="NO_DEFENSE", hyperparameters={"epochs": 3}))
    assert spec.hyperparameters["epochs"] == 3
    with pytest.raises(SpecError) as info:
        parse_spec(base_spec(job_datasets, method="NO_DEFENSE", hyperparameters={"lambda1": 3}))
    assert info.value.field == "hyperparameters.lambda1"


def run_cli(spec: dict, workdir: Path) -> subprocess.CompletedProcess:
    spec_path = workdir / "spec.json"
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-m", "trapdoor_trainer", "run", "--spec", str(spec_path), "--workdir", str(workdir / "out")],
        cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "overrides, field",
    [({"hyperparameters": {"lambda2": "x"}}, "hyperparameters.lambda2"), ({"architecture": "alexnet"}, "architecture")],
)
def test_cli_exits_2_with_json_error_naming_the_field(job_datasets, tmp_path, overrides, field):
    proc = run_cli(base_spec(job_datasets, **overrides), tmp_path)
    assert proc.returncode == 2
    error = json.loads(proc.stderr.strip().splitlines()[-1])
    assert error["field"] == field and error["message"]
    assert proc.stdout == ""


def test_cli_rejects_datasets_that_disagree(job_datasets, tmp_path):
    from trapdoor_trainer.data import write_canonical
    import numpy as np

    other = tmp_path / "rgb"
    write_canonical(other, np.zeros((10, 16, 16, 3), np.uint8), np.zeros(10, np.int64), num_classes=4)
    spec = base_spec(job_datasets)
    spec["data"] = dict(spec["data"], holdout=str(other))
    proc = run_cli(spec, tmp_path)
    assert proc.returncode == 2
    assert json.loads(proc.stderr.strip().splitlines()[-1])["field"] == "data.holdout"
