"""End to end through `python -m trapdoor_trainer run`: events, artifacts, exit codes, cancel and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from trapdoor_trainer.safetensors import load_file

TRAINER_ROOT = Path(__file__).resolve().parents[1]
FAST = {"batchSize": 64, "lr": 3e-3, "evalEvery": 0}


def write_spec(tmp_path: Path, job_datasets: dict, method: str, hp: dict, seed: int = 1) -> Path:
    spec = {
        "jobId": "test-job",
        "method": method,
        "architecture": "small-cnn",
        "data": {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]},
        "target": 0,
        "hyperparameters": hp,
        "seed": seed,
        "device": "cpu",
    }
    path = tmp_path / f"{method}-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(spec))
    return path


def start(spec: Path, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TRAPDOOR_THREADS": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "trapdoor_trainer", "run", "--spec", str(spec), "--workdir", str(workdir)],
        cwd=TRAINER_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def run(spec: Path, workdir: Path) -> tuple[int, list[dict], str]:
    proc = start(spec, workdir)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def result_of(events: list[dict]) -> dict:
    results = [e for e in events if e["type"] == "result"]
    assert len(results) == 1 and events[-1]["type"] == "result"
    return results[0]


@pytest.fixture(scope="module")
def no_defense(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("none")
    code, events, err = run(write_spec(tmp, job_datasets, "NO_DEFENSE", {"epochs": 8, **FAST}), tmp / "work")
    assert code == 0, err
    return result_of(events), events, tmp / "work"


@pytest.fixture(scope="module")
def trap_and_replace(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tnr")
    hp = {"stage1Epochs": 8, "stage2Epochs": 30, **FAST}
    code, events, err = run(write_spec(tmp, job_datasets, "TRAP_AND_REPLACE", hp), tmp / "work")
    assert code == 0, err
    return result_of(events), events, tmp / "work"


def test_no_defense_learns_the_backdoor(no_defense):
    result, _, _ = no_defense
    assert result["asr"] >= 0.9 and result["ca"] >= 0.9
    assert result["mse"] is None


def test_trap_and_replace_removes_most_of_it(no_defense, trap_and_replace):
    tnr_result, _, _ = trap_and_replace
    # Default isolate-and-retrain: the isolation trap found most of the poison (tests/test_trap_options.py
    # checks isolation quality at a budget made for it), so stage 1 trained mostly without it.
    assert tnr_result["isolatedCount"] == 300 and tnr_result["isolationRecall"] >= 0.5
    assert tnr_result["asr"] <= 0.2 and tnr_result["asr"] < no_defense[0]["asr"]
    assert tnr_result["ca"] >= 0.6
    assert 0 < tnr_result["mse"] < 0.05 and tnr_result["mseTriggered"] is not None
    for key in ("asr", "ca", "mse", "stage1Asr", "stage1Ca"):
        assert 0 <= tnr_result[key] <= 1
    assert set(tnr_result["timings"]) >= {"stage1Seconds", "stage2Seconds", "totalSeconds"}
    assert tnr_result["imagesPerSecond"]["stage1"] > 0


def test_event_stream_has_every_kind_with_its_fields(trap_and_replace):
    _, events, workdir = trap_and_replace
    kinds = {e["type"] for e in events}
    assert kinds == {"log", "progress", "metric", "checkpoint", "artifact", "result"}
    progress = [e for e in events if e["type"] == "progress"]
    assert {p["stage"] for p in progress} == {"isolate", "isolate-probe", "stage1", "stage2"}  # isolate-and-retrain is the default
    assert all(0 <= p["fraction"] <= 1 and p["imagesPerSecond"] > 0 for p in progress)
    metrics = {(e["stage"], e["name"]) for e in events if e["type"] == "metric"}
    assert {("stage1", "mse"), ("stage1", "holdoutAccuracy"), ("stage1", "train.ce"), ("stage2", "holdoutAccuracy")} <= metrics
    artifacts = {e["path"]: e for e in events if e["type"] == "artifact"}
    assert {e["kind"] for e in artifacts.values()} == {"model", "config", "metadata", "onnx", "preview", "health", "bundle"}
    for record in artifacts.values():
        assert (workdir / record["path"]).stat().st_size == record["sizeBytes"]


def test_exported_model_has_no_decoder_and_metadata_records_the_run(trap_and_replace):
    _, _, workdir = trap_and_replace
    tensors = load_file(workdir / "model.safetensors")
    assert tensors and not any(k.startswith("decoder") for k in tensors)
    assert any(k.startswith("stem.") for k in tensors) and any(k.startswith("head.") for k in tensors)
    metadata = json.loads((workdir / "metadata.json").read_text())
    assert metadata["method"] == "TRAP_AND_REPLACE" and metadata["seed"] == 1
    assert metadata["hyperparameters"]["lambda2"] == 0.1 and metadata["resolved"]["stage2"]["batchSize"] == 32
    assert set(metadata["datasets"]["train"]) >= {"images.npy", "labels.npy"}
    assert metadata["software"]["torch"] and metadata["device"]["type"] == "cpu"


def test_sigterm_checkpoints_and_resume_gives_the_same_weights(job_datasets, tmp_path):
    hp = {"stage1Epochs": 3, "stage2Epochs": 3, **FAST}
    spec = write_spec(tmp_path, job_datasets, "TRAP_AND_REPLACE", hp, seed=7)
    code, _, err = run(spec, tmp_path / "straight")
    assert code == 0, err

    proc = start(spec, tmp_path / "interrupted")
    for line in proc.stdout:  # stop mid-way through stage 1's second epoch
        event = json.loads(line)
        if event["type"] == "progress" and event["stage"] == "stage1" and event["epoch"] == 1:
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) == 3
    checkpoint = tmp_path / "interrupted" / "checkpoints" / "latest.pt"
    assert checkpoint.exists()
    assert json.loads(proc.stderr.read().strip().splitlines()[-1])["cancelled"] is True

    resumed_spec = json.loads(spec.read_text())
    resumed_spec["resumeFrom"] = str(checkpoint)
    resumed_path = tmp_path / "resumed.json"
    resumed_path.write_text(json.dumps(resumed_spec))
    code, events, err = run(resumed_path, tmp_path / "resumed")
    assert code == 0, err
    first_progress = next(e for e in events if e["type"] == "progress")
    assert (first_progress["stage"], first_progress["epoch"]) == ("stage1", 1)  # continued, not restarted
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert straight[key].equal(resumed[key]), key


def test_resume_refuses_a_checkpoint_from_another_method(job_datasets, tmp_path, no_defense):
    _, _, workdir = no_defense
    spec = json.loads(write_spec(tmp_path, job_datasets, "TRAP_AND_REPLACE", {"stage1Epochs": 1, **FAST}).read_text())
    spec["resumeFrom"] = str(workdir / "checkpoints" / "latest.pt")
    path = tmp_path / "bad-resume.json"
    path.write_text(json.dumps(spec))
    code, _, err = run(path, tmp_path / "w")
    assert code == 2 and json.loads(err.strip().splitlines()[-1])["field"] == "resumeFrom"


def test_a_crash_is_neither_0_2_nor_3(tmp_path, job_datasets):
    # A dataset directory that passes the spec check but whose arrays vanish before training.
    spec = write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 1})
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from trapdoor_trainer.__main__ import main; import trapdoor_trainer.runner as r; "
         "r.load_job_data = lambda spec: (_ for _ in ()).throw(RuntimeError('disk gone')); sys.exit(main(sys.argv[1:]))",
         "run", "--spec", str(spec), "--workdir", str(tmp_path / "w")],
        cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode not in (0, 2, 3) and "disk gone" in proc.stderr


def test_poison_command_writes_mask_manifest_and_asr_set(job_datasets, tmp_path):
    poison = {"source": job_datasets["holdout"], "test": job_datasets["test"], "attack": {"name": "badnet_white", "target": 2}, "ratio": 0.1, "seed": 4}
    (tmp_path / "poison.json").write_text(json.dumps(poison))
    proc = subprocess.run(
        [sys.executable, "-m", "trapdoor_trainer", "poison", "--spec", str(tmp_path / "poison.json"), "--out", str(tmp_path / "p"), "--asr-out", str(tmp_path / "asr")],
        cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    from trapdoor_trainer.data import load_canonical

    poisoned, clean = load_canonical(tmp_path / "p"), load_canonical(job_datasets["holdout"])
    assert poisoned.poison_mask.sum() == int(0.1 * len(clean))
    assert (poisoned.labels[poisoned.poison_mask] == 2).all()
    assert (poisoned.images[~poisoned.poison_mask] == clean.images[~poisoned.poison_mask]).all()
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["poison"]["attack"] == "badnet_white" and manifest["poison"]["poisoned"] == poisoned.poison_mask.sum()
    asr = load_canonical(tmp_path / "asr")
    assert (asr.labels != 2).all() and len(asr) == (load_canonical(job_datasets["test"]).labels != 2).sum()


def test_poison_command_names_bad_fields(job_datasets, tmp_path):
    (tmp_path / "poison.json").write_text(json.dumps({"source": job_datasets["holdout"], "attack": {"name": "badnet_grid", "target": 0}, "ratio": 1.5}))
    proc = subprocess.run(
        [sys.executable, "-m", "trapdoor_trainer", "poison", "--spec", str(tmp_path / "poison.json"), "--out", str(tmp_path / "p")],
        cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and json.loads(proc.stderr.strip().splitlines()[-1])["field"] == "ratio"
    assert not (tmp_path / "p").exists()


def test_a_builtin_attack_spec_builds_the_asr_set_from_the_test_set(job_datasets, tmp_path):
    spec = json.loads(write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 1, **FAST}).read_text())
    spec["data"].pop("asrTest")
    spec.pop("target")
    spec["attack"] = {"name": "badnet_grid", "target": 1}
    (tmp_path / "attack.json").write_text(json.dumps(spec))
    code, events, err = run(tmp_path / "attack.json", tmp_path / "w")
    assert code == 0, err
    assert result_of(events)["asr"] is not None


def test_describe_lists_methods_attacks_and_architectures():
    proc = subprocess.run([sys.executable, "-m", "trapdoor_trainer", "describe"], cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=60)
    described = json.loads(proc.stdout)
    methods = {m["name"]: m for m in described["methods"]}
    from trapdoor_trainer.defenses.registry import methods as registered

    assert set(methods) == set(registered()) and {"TRAP_AND_REPLACE", "NO_DEFENSE"} <= set(methods)
    trains = [m for m in methods.values() if m["kind"] not in ("scan", "evaluation")]
    assert all("epochs" in m["hyperparameters"] or "stage1Epochs" in m["hyperparameters"] for m in trains)
    assert methods["SCAN"]["requiredInputs"] == ["train", "holdout"] and "trapEpochs" in methods["SCAN"]["hyperparameters"]
    assert methods["TRAP_AND_REPLACE"]["hyperparameters"]["lambda2"]["default"] == 0.1
    assert {"badnet_grid", "blend", "sig", "lba", "custom"} <= {a["name"] for a in described["attacks"]}
    assert "wrn16-1" in described["architectures"]


def test_the_bundle_holds_the_exported_files_and_a_model_card(trap_and_replace):
    import tarfile

    result, events, workdir = trap_and_replace
    bundle = next(e for e in events if e["type"] == "artifact" and e["kind"] == "bundle")
    assert bundle["format"] == "tar" and bundle["path"] == "bundle.tar"
    with tarfile.open(workdir / "bundle.tar") as tar:
        assert tar.getnames() == ["model.safetensors", "config.json", "metadata.json", "model.onnx", "README.md"]
        for name in ("model.safetensors", "config.json", "metadata.json", "model.onnx"):
            assert tar.extractfile(name).read() == (workdir / name).read_bytes(), name
        card = tar.extractfile("README.md").read().decode()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    fields = {line.split(": ", 1)[0]: json.loads(line.split(": ", 1)[1]) for line in front.strip().splitlines()}
    metrics = {m["name"]: m["value"] for m in fields["metrics"]}
    assert metrics == {"clean_accuracy": result["ca"], "attack_success_rate": result["asr"], "reconstruction_mse": result["mse"]}
    metadata = json.loads((workdir / "metadata.json").read_text())
    assert {d["role"]: d["sha256"] for d in fields["datasets"]} == metadata["datasets"]
    health = json.loads((workdir / "health.json").read_text())
    assert fields["trapdoor"]["method"] == "TRAP_AND_REPLACE" and fields["trapdoor"]["hyperparameters"] == metadata["hyperparameters"]
    assert fields["trapdoor"]["health_verdict"] == health["verdict"]
    assert fields["pipeline_tag"] == "image-classification"
    assert "## Intended use" in body and "## Limits: what the defense does not guarantee" in body
    assert f"{100 * result['ca']:.2f} %" in body
    false_positives = health["calibration"]["outOfSample"]["falsePositiveRate"]  # isolation ran: the report is calibrated
    assert f"clean sets called poisoned {false_positives['count']} of {false_positives['of']}" in body
