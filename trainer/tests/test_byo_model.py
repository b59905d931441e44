"""Models their users bring: `check-model` holds an uploaded safetensors file against a catalog
architecture tensor by tensor, models normalising their input keep doing so, and EVALUATE measures
a given model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from test_cli import FAST, TRAINER_ROOT, result_of, run, write_spec
from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.export import load_exported_model
from trapdoor_trainer.model_check import check_model
from trapdoor_trainer.safetensors import load_file, save_file


@pytest.fixture(scope="module")
def trained(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("byo")
    code, events, err = run(write_spec(tmp, job_datasets, "NO_DEFENSE", {"epochs": 3, **FAST}), tmp / "work")
    assert code == 0, err
    return result_of(events), tmp / "work"


def check(tmp_path, file, **overrides) -> subprocess.CompletedProcess:
    spec = {"file": str(file), "architecture": "small-cnn", "inChannels": 1, "height": 16, "width": 16, "numClasses": 4, "dtype": "F32", **overrides}
    (tmp_path / "check.json").write_text(json.dumps(spec))
    return subprocess.run([sys.executable, "-m", "trapdoor_trainer", "check-model", "--spec", str(tmp_path / "check.json")],
                          cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=120)


def error_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 2, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def refusal(file, **overrides) -> SpecError:
    """check_model in this process (the command line around it is tested above)."""
    spec = {"file": str(file), "architecture": "small-cnn", "inChannels": 1, "height": 16, "width": 16, "numClasses": 4, "dtype": "F32", **overrides}
    with pytest.raises(SpecError) as refused:
        check_model(spec)
    return refused.value


def test_a_matching_file_passes_with_its_tensor_count(trained, tmp_path):
    _, workdir = trained
    done = check(tmp_path, workdir / "model.safetensors")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tensors"] == len(load_file(workdir / "model.safetensors")) and out["parameters"] > 1000


def test_half_precision_passes_when_declared_and_fails_when_not(trained, tmp_path):
    _, workdir = trained
    half = {k: v.half() if v.is_floating_point() else v for k, v in load_file(workdir / "model.safetensors").items()}
    save_file(half, tmp_path / "half.safetensors")
    assert check(tmp_path, tmp_path / "half.safetensors", dtype="F16").returncode == 0
    problem = refusal(tmp_path / "half.safetensors")
    assert problem.field == "model" and "is float16, declared F32" in problem.message


def test_mismatches_are_named_tensor_by_tensor(trained, tmp_path):
    _, workdir = trained
    problem = error_of(check(tmp_path, workdir / "model.safetensors", numClasses=10))
    assert problem["field"] == "model" and "shape [4" in problem["message"] and "the architecture needs [10" in problem["message"]
    tensors = load_file(workdir / "model.safetensors")
    name = sorted(tensors)[0]
    broken = dict(tensors)
    broken[name] = torch.full_like(tensors[name], float("nan"))
    broken["extra.weight"] = torch.zeros(2)
    save_file(broken, tmp_path / "broken.safetensors")
    message = refusal(tmp_path / "broken.safetensors").message
    assert f"tensor {name} holds NaN" in message and "unexpected tensor extra.weight [2]" in message
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04not a model")
    assert "not a valid safetensors file" in refusal(tmp_path / "junk.safetensors").message
    assert refusal(workdir / "model.safetensors", dtype="F64").field == "dtype"


def test_a_model_with_preprocessing_normalises_its_own_input(trained, tmp_path):
    _, workdir = trained
    config = json.loads((workdir / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((workdir / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({**config, "preprocessing": {"mean": [0.3], "std": [0.2]}}))
    plain, normalising = load_exported_model(workdir), load_exported_model(tmp_path)
    x = torch.rand(5, 1, 16, 16)
    assert torch.allclose(normalising(x), plain((x - 0.3) / 0.2), atol=1e-5)
    assert "input_mean" not in normalising.state_dict()


def test_evaluate_measures_a_given_model(trained, job_datasets, tmp_path):
    result, workdir = trained
    spec = json.loads(write_spec(tmp_path, job_datasets, "EVALUATE", {}).read_text())
    spec["data"] = {"train": job_datasets["test"], "holdout": job_datasets["test"], "test": job_datasets["test"], "asrTest": job_datasets["asr"], "initModel": str(workdir)}
    (tmp_path / "eval.json").write_text(json.dumps(spec))
    code, events, err = run(tmp_path / "eval.json", tmp_path / "work")
    assert code == 0, err
    measured = result_of(events)
    assert measured["ca"] == pytest.approx(result["ca"]) and measured["asr"] == pytest.approx(result["asr"])
    assert len(measured["perClassAccuracy"]) == 4 and all(0 <= a <= 1 for a in measured["perClassAccuracy"])
    assert not [e for e in events if e["type"] == "artifact"]
    del spec["data"]["initModel"]
    (tmp_path / "bare.json").write_text(json.dumps(spec))
    code, _, err = run(tmp_path / "bare.json", tmp_path / "bare")
    assert code == 2 and json.loads(err.strip().splitlines()[-1])["field"] == "data.initModel"
