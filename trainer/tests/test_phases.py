"""PhaseRunner: what a checkpoint holds, which phases a resumed job skips, and what it refuses.

The methods' own resume tests (test_abl, test_nad, test_ibau, ...) check byte-identical weights
through whole defenses; these check the runner's contract on a toy plan of loops and steps.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_cli import run, write_spec
from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.data import DeviceData
from trapdoor_trainer.errors import Cancelled, SpecError
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.phases import PhaseRunner, Step
from trapdoor_trainer.runner import pick_device
from trapdoor_trainer.spec import parse_spec
from trapdoor_trainer.training import Phase
from cancel import CancelAfter


def make_context(job_datasets: dict, workdir, resume_state=None) -> RunContext:
    data = {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"]}
    spec = parse_spec({"method": "NO_DEFENSE", "architecture": "small-cnn", "seed": 3, "device": "cpu", "data": data})
    events = io.StringIO()
    return RunContext(spec=spec, workdir=workdir, device=pick_device("cpu"), emitter=Emitter(events), data=None, resume_state=resume_state)


def events_of(ctx: RunContext) -> list[dict]:
    return [json.loads(line) for line in ctx.emitter.stream.getvalue().splitlines()]


def toy_data() -> DeviceData:
    rng = np.random.default_rng(0)
    return DeviceData(rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8), rng.integers(0, 2, 40), torch.device("cpu"))


def loop(name: str, model: torch.nn.Module, data: DeviceData) -> Phase:
    def loss_fn(x, y, generator):
        loss = F.cross_entropy(model(x), y)
        return loss, {"ce": loss}

    return Phase(
        name=name, epochs=2, batch_size=8, lr=0.05, weight_decay=0.0, data=data, parameters=list(model.parameters()),
        loss_fn=loss_fn, set_modes=model.train, saves={"model": model}, augment="none",
        on_epoch_end=lambda epoch: {"weightNorm": float(model[1].weight.norm())},
        summary=lambda: {"bias": model[1].bias.tolist()},
    )


def toy_plan(ctx: RunContext, calls: list) -> tuple[dict, torch.nn.Module]:
    """step "count" -> loop "first" -> step "probe" -> loop "second"."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    data = toy_data()
    runner = PhaseRunner(ctx)

    def step(name: str, result: dict):
        def run() -> dict:
            calls.append(name)
            return result

        return Step(name, run)

    results = {"count": runner.run(step("count", {"images": len(data)}))}
    results["first"] = runner.run(loop("first", model, data))
    results["probe"] = runner.run(step("probe", {"weight": model[1].weight.detach().clone()}))
    results["second"] = runner.run(loop("second", model, data))
    return results, model


def test_a_resumed_job_skips_the_finished_phases_and_continues_the_interrupted_one(job_datasets, tmp_path):
    straight_calls: list = []
    straight, straight_model = toy_plan(make_context(job_datasets, tmp_path / "straight"), straight_calls)
    assert straight_calls == ["count", "probe"]
    assert [h["epoch"] for h in straight["second"]["history"]] == [0, 1] and set(straight["second"]) >= {"seconds", "imagesPerSecond", "bias"}

    interrupted = make_context(job_datasets, tmp_path / "interrupted")
    interrupted.cancel = CancelAfter(5 + 5 + 2)  # both epochs of "first" (40 // 8 steps each), 2 steps into "second"
    with pytest.raises(Cancelled):
        toy_plan(interrupted, [])
    checkpoint = load_checkpoint(str(interrupted.checkpoint_path))
    assert (checkpoint["stage"], checkpoint["epoch"], checkpoint["step"]) == ("second", 0, 2)
    assert list(checkpoint["phases"]) == ["count", "first", "probe"]  # the finished phases, in order
    assert set(checkpoint) >= {"model", "optimizer", "history"} and checkpoint["history"] == []
    stages = [(e["type"], e["stage"]) for e in events_of(interrupted) if e["type"] == "checkpoint"]
    assert stages == [("checkpoint", "first"), ("checkpoint", "first"), ("checkpoint", "second")]  # steps write none

    resumed_calls: list = []
    resumed_ctx = make_context(job_datasets, tmp_path / "resumed", resume_state=checkpoint)
    resumed, resumed_model = toy_plan(resumed_ctx, resumed_calls)
    assert resumed_calls == []  # both steps had finished: their results come from the checkpoint
    assert torch.equal(resumed["probe"]["weight"], straight["probe"]["weight"])
    assert resumed["first"]["history"] == straight["first"]["history"]
    assert [h["epoch"] for h in resumed["second"]["history"]] == [0, 1]
    assert resumed["second"]["bias"] == straight["second"]["bias"]
    for key, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    progress = [e for e in events_of(resumed_ctx) if e["type"] == "progress"]
    assert {e["stage"] for e in progress} == {"second"} and progress[0]["epoch"] == 0


def test_a_checkpoint_from_a_phase_the_job_does_not_reach_first_is_refused(job_datasets, tmp_path):
    checkpoint = {"stage": "elsewhere", "epoch": 1, "step": 0, "phases": {}, "optimizer": {}, "history": [], "model": {}}
    with pytest.raises(SpecError, match="elsewhere"):
        toy_plan(make_context(job_datasets, tmp_path, resume_state=checkpoint), [])


def test_phase_names_are_unique_and_saves_avoid_the_runners_keys(job_datasets, tmp_path):
    runner = PhaseRunner(make_context(job_datasets, tmp_path))
    runner.run(Step("once", dict))
    with pytest.raises(ValueError, match="twice"):
        runner.run(Step("once", dict))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    phase = loop("clash", model, toy_data())
    phase.saves = {"history": model}
    with pytest.raises(ValueError, match="reserved"):
        runner.run(phase)


def test_a_checkpoint_of_an_older_format_restarts_the_job(job_datasets, tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"formatVersion": 1, "method": "NO_DEFENSE", "seed": 1, "stage": "train", "epoch": 1, "step": 0}, old)
    spec_path = write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 1})
    spec = json.loads(spec_path.read_text())
    spec["resumeFrom"] = str(old)
    spec_path.write_text(json.dumps(spec))
    code, events, err = run(spec_path, tmp_path / "work")
    assert code == 0, err
    assert any(e["type"] == "log" and "format 1" in e["message"] and "beginning" in e["message"] for e in events)
    # Started from epoch 0, not from the old file's epoch 1.
    assert [e["epoch"] for e in events if e["type"] == "progress"][0] == 0
    assert events[-1]["type"] == "result"


def test_a_file_that_is_no_checkpoint_is_invalid_input(job_datasets, tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": [1, 2, 3]}, bogus)
    spec_path = write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 1})
    spec = json.loads(spec_path.read_text())
    spec["resumeFrom"] = str(bogus)
    spec_path.write_text(json.dumps(spec))
    code, _, err = run(spec_path, tmp_path / "work")
    error = json.loads(err.strip().splitlines()[-1])
    assert code == 2 and error["field"] == "resumeFrom" and "format" in error["message"]


def test_reported_losses_are_the_means_of_the_steps_terms(job_datasets, tmp_path):
    """Terms are summed on the device and read back at reports: the figures are still the means."""
    ctx = make_context(job_datasets, tmp_path)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    seen: list[float] = []

    def loss_fn(x, y, generator):
        loss = F.cross_entropy(model(x), y)
        seen.append(float(loss))
        return loss, {"ce": loss, "constant": 0.25}  # a plain float is accepted too

    phase = Phase(name="means", epochs=2, batch_size=8, lr=0.05, weight_decay=0.0, data=toy_data(), parameters=list(model.parameters()),
                  loss_fn=loss_fn, set_modes=model.train, saves={"model": model}, augment="none")
    result = PhaseRunner(ctx).run(phase)
    per_epoch = len(seen) // 2
    for epoch, record in enumerate(result["history"]):
        assert record["train.ce"] == pytest.approx(np.mean(seen[epoch * per_epoch : (epoch + 1) * per_epoch]), rel=1e-6)
        assert record["train.constant"] == pytest.approx(0.25)
    last = [e for e in events_of(ctx) if e["type"] == "progress"][-1]
    assert last["loss"]["ce"] == pytest.approx(np.mean(seen[per_epoch:]), rel=1e-6)
