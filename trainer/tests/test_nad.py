"""NAD mechanics: attention maps, the distillation loss, which layers are distilled, Cutout,
resume in either stage, and a tiny CLI run."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.defenses import nad
from trapdoor_trainer.defenses.feature_hooks import module_names, stage_ends
from trapdoor_trainer.errors import Cancelled
from trapdoor_trainer.models import create_model

from test_cli import result_of, run, write_spec
from test_fine_pruning import CancelAfter, assert_same_weights, init_model, make_context  # noqa: F401 - init_model is a fixture


def test_attention_map_is_the_normalised_channel_sum_of_squares():
    features = torch.tensor([[[[1.0, 2.0]], [[-2.0, 0.0]]]])  # N=1, C=2, H=1, W=2
    # sum_c |a|^2 per position: (1 + 4, 4 + 0) = (5, 4); L2 norm sqrt(41)
    expected = torch.tensor([[5.0, 4.0]]) / (math.sqrt(41) + 1e-6)
    assert torch.allclose(nad.attention_map(features, 2.0), expected, rtol=0, atol=1e-7)
    # p = 1: (3, 2) / sqrt(13); each sample is normalised on its own
    batch = torch.cat([features, 3 * features])
    expected_p1 = torch.tensor([3.0, 2.0]) / math.sqrt(13)
    assert torch.allclose(nad.attention_map(batch, 1.0), expected_p1.expand(2, 2), atol=1e-6)


def test_attention_loss_is_the_mean_squared_map_difference():
    a = torch.zeros(1, 1, 1, 2)
    a[0, 0, 0, 0] = 1.0  # map (1, 0)
    b = torch.zeros(1, 1, 1, 2)
    b[0, 0, 0, 1] = 1.0  # map (0, 1)
    assert float(nad.attention_loss(a, b, 2.0)) == pytest.approx(((1 / (1 + 1e-6)) ** 2) * 2 / 2)


def distillation_terms(student, teacher, betas=(500.0, 1000.0, 1000.0)):
    """One loss evaluation on random inputs; the caller sets the modules' modes."""
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 4, (8,))
    example = x[:2]
    loss_fn = nad.distillation_loss(student, teacher, stage_ends(student, example), stage_ends(teacher, example), betas, 2.0, 2)
    return loss_fn(x, y, torch.Generator().manual_seed(1))


def test_distillation_loss_is_pure_cross_entropy_when_student_equals_teacher():
    torch.manual_seed(2)
    student = create_model("small-cnn", 1, 4, (16, 16), with_decoder=False)
    teacher = copy.deepcopy(student)
    student.eval()  # same BN behaviour on both sides, so the features are identical
    teacher.eval()
    total, terms = distillation_terms(student, teacher)
    for key in ("at1", "at2", "at3"):
        assert float(terms[key]) == 0.0
    assert float(total) == float(terms["ce"])

    torch.manual_seed(3)
    other = create_model("small-cnn", 1, 4, (16, 16), with_decoder=False).eval()
    student.train()
    total, terms = distillation_terms(student, other)
    assert all(float(terms[k]) > 0 for k in ("at1", "at2", "at3"))
    expected = terms["ce"] + 500 * terms["at1"] + 1000 * terms["at2"] + 1000 * terms["at3"]
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    total.backward()
    assert next(student.parameters()).grad is not None and next(other.parameters()).grad is None


@pytest.mark.parametrize("architecture, split, shape, expected", [
    ("wrn16-1", 5, (3, 32, 32), ["stem.blocks.1", "stem.blocks.3", "head.body.0"]),
    ("wrn16-1", 4, (3, 32, 32), ["stem.blocks.1", "stem.blocks.3", "head.body.1"]),
    ("wrn16-1", 6, (3, 32, 32), ["stem.blocks.1", "stem.blocks.3", "stem.blocks.5"]),
    ("resnet18", 5, (3, 32, 32), ["stem.6", "stem.8", "head.body"]),  # ends of layer2, layer3, layer4
    ("small-cnn", 5, (1, 16, 16), ["stem.2", "stem.5", "head.body.2"]),
])
def test_distilled_layers_are_the_ends_of_the_last_three_stages(architecture, split, shape, expected):
    model = create_model(architecture, shape[0], 10, shape[1:], stem_end_block=split, with_decoder=False)
    model.train()
    ends = stage_ends(model, torch.rand(2, *shape))
    assert module_names(model, ends) == expected
    assert model.training  # the probe restores the mode


def test_cutout_zeroes_one_square_per_image_clipped_at_the_border():
    x = torch.ones(64, 1, 8, 8)
    out = nad.cutout(x, torch.Generator().manual_seed(0), 3)
    holes = (out == 0).sum(dim=(1, 2, 3))
    assert holes.max() == 9 and holes.min() >= 4  # full 3x3 inside, a 2x2 corner at worst
    for image in out[:, 0]:
        rows, cols = (image == 0).nonzero(as_tuple=True)
        assert rows.max() - rows.min() <= 2 and cols.max() - cols.min() <= 2
    assert torch.equal(nad.cutout(x, torch.Generator(), 0), x)
    assert (nad.scaled_cutout(3, 32), nad.scaled_cutout(3, 16), nad.scaled_cutout(3, 64), nad.scaled_cutout(0, 32)) == (3, 2, 6, 0)


HP = {"teacherEpochs": 2, "epochs": 2, "distillBatchSize": 64}  # 200 holdout images: 3 steps/epoch per stage


@pytest.mark.parametrize("stop_after, stage", [(4, "teacher"), (10, "distill")])
def test_resume_in_either_stage_gives_the_same_student(job_datasets, init_model, tmp_path, stop_after, stage):
    straight = nad.run(make_context("NAD", job_datasets, tmp_path / "straight", init_model, **HP))

    interrupted = make_context("NAD", job_datasets, tmp_path / "interrupted", init_model, **HP)
    interrupted.cancel = CancelAfter(stop_after)
    with pytest.raises(Cancelled):
        nad.run(interrupted)
    state = load_checkpoint(str(interrupted.checkpoint_path))
    assert (state["stage"], state["epoch"], state["step"]) == (stage, 1, 1)  # epoch 1, step 1 of that stage

    resumed = nad.run(make_context("NAD", job_datasets, tmp_path / "resumed", init_model, resume=state, **HP))
    assert_same_weights(straight["model"], resumed["model"])
    assert resumed["metrics"]["teacherCa"] == straight["metrics"]["teacherCa"]
    assert len(resumed["history"]["distill"]) == 2 and len(resumed["history"]["teacher"]) == 2


def test_student_moves_away_from_the_backdoored_start_and_teacher_differs(job_datasets, init_model, tmp_path):
    from trapdoor_trainer.export import load_exported_model

    outcome = nad.run(make_context("NAD", job_datasets, tmp_path, init_model, **HP))
    start = load_exported_model(init_model)
    assert not torch.equal(outcome["model"].head.fc.weight.detach(), start.head.fc.weight)
    assert outcome["resolved"]["attentionLayers"] == ["stem.2", "stem.5", "head.body.2"]
    assert {"train.ce", "train.at1", "train.at2", "train.at3", "train.total"} <= set(outcome["history"]["distill"][0])


def test_cli_run_from_an_init_model_teaches_distils_and_exports(job_datasets, init_model, tmp_path):
    # Starting from data.initModel (FP's CLI test covers the pretraining path).
    hp = {"teacherEpochs": 1, "epochs": 1, "evalEvery": 0}
    spec_path = write_spec(tmp_path, job_datasets, "NAD", hp)
    spec = json.loads(spec_path.read_text())
    spec["data"]["initModel"] = init_model
    spec_path.write_text(json.dumps(spec))
    code, events, err = run(spec_path, tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["method"] == "NAD"
    for key in ("asr", "ca", "beforeAsr", "beforeCa", "teacherAsr", "teacherCa"):
        assert 0 <= result[key] <= 1, key
    assert set(result["timings"]) >= {"pretrainSeconds", "teacherSeconds", "distillSeconds", "totalSeconds"}
    assert {e["kind"] for e in events if e["type"] == "artifact"} == {"model", "config", "metadata", "onnx", "bundle"}
    assert {e["stage"] for e in events if e["type"] == "progress"} == {"teacher", "distill"}
    assert result["timings"]["pretrainSeconds"] == 0.0
    # the published recipe by default: Nesterov SGD at 0.01 (one epoch: no drop yet)
    assert {e["lr"] for e in events if e["type"] == "progress"} == {0.01}
    recipe = json.loads((tmp_path / "work" / "metadata.json").read_text())["resolved"]["recipe"]
    assert recipe["distill"] == recipe["teacher"] == {"optimizer": "sgd", "lr": 0.01, "weightDecay": 1e-4, "schedule": "step", "momentum": 0.9, "nesterov": True, "drops": [[0.1, 0.1]]}
