"""DP-SGD mechanics: exact per-sample gradients, clipping, noise scale, resume, and a CLI run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from test_cli import result_of, run, write_spec
from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.defenses import dp_sgd, dp_sgd_step, per_sample_gradients
from trapdoor_trainer.errors import Cancelled
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.export import load_exported_model
from trapdoor_trainer.models import create_model
from trapdoor_trainer.privacy import SubsampledGaussianAccountant
from trapdoor_trainer.runner import load_job_data, pick_device
from trapdoor_trainer.spec import parse_spec
from cancel import CancelAfter


def group_norm_model(arch: str, shape: tuple, classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, shape[0], classes, shape[1:], with_decoder=False, norm="group").to(memory_format=torch.channels_last)
    with torch.no_grad():  # non-trivial GroupNorm affine parameters
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return model


def loop_gradients(model, x, y) -> list[dict]:
    """The oracle: one backward pass per sample."""
    out = []
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append({p: p.grad.clone() for p in model.parameters() if p.grad is not None})
    model.zero_grad()
    return out


# small-cnn has ReLU(inplace=True) after every norm; the faithful WRN computes bn1 of its
# channel-changing blocks and never uses it (those parameters get no gradient at all).
@pytest.mark.parametrize("arch,shape", [("small-cnn", (1, 16, 16)), ("wrn16-1", (3, 12, 12))])
def test_per_sample_gradients_equal_a_loop_over_samples(arch, shape):
    model = group_norm_model(arch, shape)
    x, y = torch.rand(5, *shape).contiguous(memory_format=torch.channels_last), torch.randint(0, 5, (5,))
    psg = per_sample_gradients.PerSampleGradients(model)
    with psg.capture():
        losses = F.cross_entropy(model(x), y, reduction="none")
    grads = psg.gradients(losses)
    norms2 = psg.squared_norms(losses)
    expected = loop_gradients(model, x, y)
    assert set(grads) == set(expected[0])  # same parameters reached, unused ones excluded
    for i, sample in enumerate(expected):
        for p, g in sample.items():
            torch.testing.assert_close(grads[p][i], g, rtol=1e-4, atol=1e-6)
        assert float(norms2[i]) == pytest.approx(float(sum(g.pow(2).sum() for g in sample.values())), rel=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,dilation", [(3, 1, 1, 1), (3, 2, 1, 1), (1, 2, 0, 1), (3, 1, 2, 2), (5, 2, 2, 1)])
def test_patches_equal_unfold(kernel, stride, padding, dilation):
    conv = torch.nn.Conv2d(4, 6, kernel, stride=stride, padding=padding, dilation=dilation)
    a = torch.randn(3, 4, 11, 9)
    expected = F.unfold(a, kernel, dilation=dilation, padding=padding, stride=stride)
    assert torch.equal(per_sample_gradients._patches(conv, a), expected)


@pytest.mark.parametrize("ghost", [True, False])
def test_ghost_and_materialised_weight_norms_agree(ghost):
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    a = torch.randn(6, 3, 9, 9)
    g = torch.randn(6, 4, 5, 5)
    per_sample = torch.stack([torch.nn.grad.conv2d_weight(a[i : i + 1], conv.weight.shape, g[i : i + 1], stride=2, padding=1) for i in range(6)])
    expected = per_sample.pow(2).sum(dim=(1, 2, 3, 4))
    torch.testing.assert_close(per_sample_gradients.matmul_weight_squared_norms(conv, a, g, ghost=ghost), expected, rtol=1e-4, atol=1e-5)


def test_clipping_bounds_every_sample_and_sums_the_clipped_gradients():
    model = group_norm_model("small-cnn", (1, 16, 16))
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 5, (8,))
    per_sample = loop_gradients(model, x, y)
    norms = torch.tensor([float(sum(g.pow(2).sum() for g in s.values()).sqrt()) for s in per_sample])
    clip = float(norms.median())  # some samples clipped, some not
    factors = dp_sgd_step.clip_factors(norms, clip)
    assert (factors * norms <= clip * (1 + 1e-5)).all()
    assert ((factors == 1) == (norms < clip)).all() and (factors < 1).any() and (factors == 1).any()

    loss, terms = dp_sgd_step.dp_sgd_loss(model, clip, noise_multiplier=0.0)(x, y, torch.Generator().manual_seed(0))
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        expected = sum(f * s[p] for f, s in zip(factors, per_sample)) / 8
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-7)
    assert float(terms["clipped"]) == pytest.approx(float((factors < 1).float().mean()))


def dp_gradient(model, x, y, clip: float, sigma: float, seed: int) -> torch.Tensor:
    loss, _ = dp_sgd_step.dp_sgd_loss(model, clip, sigma)(x, y, torch.Generator().manual_seed(seed))
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_noise_std_is_sigma_c_over_batch_size_and_reproducible():
    model = group_norm_model("small-cnn", (1, 16, 16))
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 5, (8,))
    clip, sigma = 0.5, 2.0
    clean = dp_gradient(model, x, y, clip, 0.0, seed=0)
    noise = torch.cat([dp_gradient(model, x, y, clip, sigma, seed) - clean for seed in range(4)])  # ~96k draws
    expected_std = sigma * clip / 8
    assert float(noise.std()) == pytest.approx(expected_std, rel=0.02)
    assert abs(float(noise.mean())) < 0.02 * expected_std
    assert torch.equal(dp_gradient(model, x, y, clip, sigma, 3), dp_gradient(model, x, y, clip, sigma, 3))


def test_batchnorm_models_are_refused():
    with pytest.raises(ValueError, match="BatchNorm"):
        per_sample_gradients.PerSampleGradients(create_model("small-cnn", 1, 3, (8, 8), with_decoder=False))


def make_context(job_datasets: dict, workdir: Path, resume_state=None, **hp) -> RunContext:
    spec = parse_spec({
        "method": "DP_SGD", "architecture": "small-cnn", "seed": 5, "device": "cpu", "target": 0,
        "data": {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]},
        "hyperparameters": {"epochs": 2, "batchSize": 128, "lr": 3e-3, "evalEvery": 0, "augment": "crop", **hp},
    })
    return RunContext(spec=spec, workdir=workdir, device=pick_device("cpu"), emitter=Emitter(io.StringIO()), data=load_job_data(spec), resume_state=resume_state)


def test_resume_after_cancel_gives_the_same_weights(job_datasets, tmp_path):
    straight = dp_sgd.run(make_context(job_datasets, tmp_path / "a"))["model"].state_dict()
    interrupted = make_context(job_datasets, tmp_path / "b")
    interrupted.cancel = CancelAfter(20)  # mid-way through the second epoch (15 steps each)
    with pytest.raises(Cancelled):
        dp_sgd.run(interrupted)
    state = load_checkpoint(str(interrupted.checkpoint_path))
    assert (state["stage"], state["epoch"], state["step"]) == ("train", 1, 5)
    resumed = dp_sgd.run(make_context(job_datasets, tmp_path / "c", resume_state=state))
    for key, value in resumed["model"].state_dict().items():
        assert torch.equal(value, straight[key]), key
    assert [h["epoch"] for h in resumed["history"]["train"]] == [0, 1]


def test_cli_run_reports_epsilon_and_exports_a_group_norm_model(job_datasets, tmp_path):
    hp = {"epochs": 1, "batchSize": 64, "lr": 3e-3, "evalEvery": 0, "augment": "none", "noiseMultiplier": 1.5}
    code, events, err = run(write_spec(tmp_path, job_datasets, "DP_SGD", hp), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["method"] == "DP_SGD"
    assert 0 <= result["asr"] <= 1 and 0 <= result["ca"] <= 1 and result["mse"] is None
    steps = 2000 // 64  # the fixture's training set holds 2000 images
    expected, _ = SubsampledGaussianAccountant(1.5, 64 / 2000).epsilon(steps, 1e-5)
    assert result["epsilon"] == pytest.approx(expected) and result["delta"] == 1e-5
    assert {e["kind"] for e in events if e["type"] == "artifact"} == {"model", "config", "metadata", "onnx", "bundle"}
    work = tmp_path / "work"
    assert json.loads((work / "config.json").read_text())["norm"] == "group"
    metadata = json.loads((work / "metadata.json").read_text())
    assert metadata["resolved"]["norm"] == "group" and metadata["resolved"]["steps"] == steps
    model = load_exported_model(work)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert {("train", "epsilon"), ("train", "train.clipped")} <= {(e["stage"], e["name"]) for e in events if e["type"] == "metric"}
