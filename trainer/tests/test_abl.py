"""ABL mechanics: the LGA loss's two-sided gradient, isolation, its precision, resume, a CLI run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_cli import result_of, run, write_spec
from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.defenses import abl
from trapdoor_trainer.errors import Cancelled
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.runner import load_job_data, pick_device
from trapdoor_trainer.spec import parse_spec
from cancel import CancelAfter


@pytest.mark.parametrize("logit_gap,moves", [(0.0, "down"), (4.0, "up")])
def test_lga_descends_above_gamma_and_ascends_below(logit_gap, moves):
    # One sample, three classes, label 0. Gap 0: CE = log 3 ≈ 1.10 > γ; gap 4: CE ≈ 0.036 < γ.
    logits = torch.tensor([[logit_gap, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    loss, terms = abl.lga_loss(lambda x: logits, gamma=0.5)(torch.zeros(1), y, torch.Generator())
    loss.backward()
    ce_grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), logits)[0]
    sign = 1.0 if moves == "down" else -1.0
    torch.testing.assert_close(logits.grad, sign * ce_grad)  # ±∇CE exactly
    with torch.no_grad():
        stepped = logits - 0.1 * logits.grad  # one gradient-descent step on the LGA loss
        after = float(torch.nn.functional.cross_entropy(stepped, y))
    assert (after < float(terms["ce"])) == (moves == "down")
    assert float(loss) == pytest.approx(sign * float(terms["ce"]))


def test_isolation_picks_exactly_the_lowest_losses_with_ties_to_the_lower_index():
    losses = torch.tensor([0.9, 0.1, 0.5, 0.1, 2.0, 0.05, 0.3, 0.7, 0.1, 1.0])
    assert abl.lowest_loss_indices(losses, 0.3).tolist() == [5, 1, 3]  # 3 of 10; the 0.1 at index 8 loses the tie
    assert abl.lowest_loss_indices(losses, 0.5).tolist() == [5, 1, 3, 8, 6]
    assert abl.lowest_loss_indices(losses, 0.0).tolist() == []


def test_isolation_precision_and_recall_against_the_poison_mask():
    mask = np.zeros(10, dtype=bool)
    mask[[1, 3, 5, 9]] = True
    quality = abl.isolation_quality(np.array([5, 1, 3, 8]), mask)
    assert quality == {"isolationPrecision": 0.75, "isolationRecall": 0.75}
    assert abl.isolation_quality(np.array([5, 1]), None) == {"isolationPrecision": None, "isolationRecall": None}


def test_ascent_loss_is_negative_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    loss, terms = abl.ascent_loss(lambda x: logits)(torch.zeros(2), y, torch.Generator())
    assert float(loss) == pytest.approx(-float(torch.nn.functional.cross_entropy(logits, y)))
    assert float(terms["ce"]) == pytest.approx(-float(loss))


def make_context(job_datasets: dict, workdir: Path, resume_state=None) -> RunContext:
    spec = parse_spec({
        "method": "ABL", "architecture": "small-cnn", "seed": 2, "device": "cpu", "target": 0,
        "data": {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]},
        "hyperparameters": {"epochs": 1, "finetuneEpochs": 2, "unlearnEpochs": 2, "batchSize": 128, "lr": 3e-3, "unlearnLr": 1e-3, "evalEvery": 0, "augment": "crop"},
    })
    return RunContext(spec=spec, workdir=workdir, device=pick_device("cpu"), emitter=Emitter(io.StringIO()), data=load_job_data(spec), resume_state=resume_state)


def test_resume_in_a_later_phase_gives_the_same_weights_and_isolation(job_datasets, tmp_path):
    straight = abl.run(make_context(job_datasets, tmp_path / "a"))
    interrupted = make_context(job_datasets, tmp_path / "b")
    interrupted.cancel = CancelAfter(15 + 15 + 3)  # isolation (2000//128 steps), fine-tune epoch 0 (1980//128), 3 steps into epoch 1
    with pytest.raises(Cancelled):
        abl.run(interrupted)
    state = load_checkpoint(str(interrupted.checkpoint_path))
    assert (state["stage"], state["epoch"], state["step"]) == ("finetune", 1, 3)
    resumed = abl.run(make_context(job_datasets, tmp_path / "c", resume_state=state))
    for key, value in resumed["model"].state_dict().items():
        assert torch.equal(value, straight["model"].state_dict()[key]), key
    assert resumed["metrics"] == straight["metrics"]
    assert set(resumed["history"]) == {"isolation", "finetune", "unlearn"}
    assert len(resumed["history"]["finetune"]) == 2


def test_cli_run_reports_isolation_precision(job_datasets, tmp_path):
    hp = {"epochs": 1, "finetuneEpochs": 1, "unlearnEpochs": 1, "batchSize": 128, "lr": 3e-3, "evalEvery": 0, "augment": "none"}
    code, events, err = run(write_spec(tmp_path, job_datasets, "ABL", hp), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["method"] == "ABL"
    assert 0 <= result["asr"] <= 1 and 0 <= result["ca"] <= 1 and result["mse"] is None
    assert result["isolatedCount"] == 20  # 1 % of the fixture's 2000 training images
    assert isinstance(result["isolationPrecision"], float) and 0 <= result["isolationPrecision"] <= 1
    assert set(result["timings"]) >= {"isolationSeconds", "finetuneSeconds", "unlearnSeconds", "totalSeconds"}
    assert {e["kind"] for e in events if e["type"] == "artifact"} == {"model", "config", "metadata", "onnx", "bundle"}
    assert {e["stage"] for e in events if e["type"] == "progress"} == {"isolation", "finetune", "unlearn"}
    metadata = json.loads((tmp_path / "work" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["gamma"] == 0.5 and metadata["hyperparameters"]["isolationRatio"] == 0.01
    recipe = metadata["resolved"]["recipe"]  # the published recipe, at the job's own rate
    assert recipe["isolation"] == {"optimizer": "sgd", "lr": 3e-3, "weightDecay": 1e-4, "schedule": "constant", "momentum": 0.9, "nesterov": True}
    assert recipe["finetune"]["drops"] == [[2 / 3, 0.1]] and recipe["unlearn"]["lr"] == 5e-4
