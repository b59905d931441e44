"""T&R mechanics: loss terms, stage-2 freezing, head replacement, decoder removal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from trapdoor_trainer import hyperparams
from trapdoor_trainer.defenses import tnr
from trapdoor_trainer.defenses.common import build_model
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.metrics import total_variation
from trapdoor_trainer.models import create_model
from trapdoor_trainer.phases import PhaseRunner
from trapdoor_trainer.runner import load_job_data, pick_device
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.spec import parse_spec


def test_total_variation_matches_hand_computation():
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])  # B=C=1, 2x2
    # vertical: (0.5-0)^2 + (0.25-1)^2 = 0.25 + 0.5625; horizontal: (1-0)^2 + (0.25-0.5)^2 = 1 + 0.0625
    assert float(total_variation(x)) == pytest.approx((0.25 + 0.5625 + 1 + 0.0625) / 4)


def test_stage1_loss_is_ce_plus_weighted_mse_and_tv():
    torch.manual_seed(0)
    model = create_model("small-cnn", 1, 3, (8, 8))
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    total, terms = tnr.stage1_loss(model, lambda1=10.0, lambda2=0.5)(x, y, torch.Generator())
    logits, recon = model.forward_with_reconstruction(x)
    expected_mse = ((recon - x) ** 2).mean()
    assert float(terms["mse"]) == pytest.approx(float(expected_mse), rel=1e-5)
    assert float(terms["ce"]) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert float(total) == pytest.approx(float(terms["ce"] + 10 * terms["mse"] + 0.5 * terms["tv"]), rel=1e-5)


def test_cutmix_reports_the_exact_kept_pixel_fraction():
    x = torch.zeros(8, 1, 10, 10)
    x[:4] = 1.0
    mixed, ya, yb, kept = tnr.cutmix(x, torch.arange(8), torch.Generator().manual_seed(4))
    changed = (mixed != x).float().mean(dim=(1, 2, 3))
    # Every image keeps `kept` of its own pixels; those whose partner differs show exactly 1-kept changed.
    for i in range(8):
        if x[i, 0, 0, 0] != x[(yb[i]), 0, 0, 0]:
            assert float(changed[i]) == pytest.approx(1 - kept)
    assert torch.equal(ya, torch.arange(8))


def test_overlay_lays_another_batch_image_over_about_half_the_batch_within_its_strength():
    # Image i is all i, so a mixed image is (1 - w) i + w j: w and the partner j can be read back.
    n = 400
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    mixed = tnr.overlay(x, torch.Generator().manual_seed(2), 0.3)
    assert mixed.shape == x.shape and torch.allclose(mixed, mixed[:, :, :1, :1].expand_as(mixed))  # one weight per image
    shift = (mixed - x)[:, 0, 0, 0]
    touched = shift.abs() > 1e-4
    assert 0.4 * n < int(touched.sum()) < 0.6 * n  # about half the batch, the rest untouched
    # (1 - w) i + w j = i + w (j - i): every shift is a weight up to 0.3 of the gap to some other image.
    weights = []
    for i in torch.nonzero(touched).flatten().tolist():
        fits = [float(shift[i]) / (j - i) for j in range(n) if j != i and 0 < float(shift[i]) / (j - i) <= 0.3 + 1e-5]
        assert fits, i
        weights.append(min(fits))
    assert max(weights) <= 0.3 + 1e-5


def test_stage2_overlay_changes_the_inputs_not_the_labels():
    model = create_model("small-cnn", 1, 3, (8, 8))
    model.eval()
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 3, (64,))
    plain = {"cutmix": False, "labelSmoothing": 0.0, "overlay": 0.0}
    loss_plain, _ = tnr.stage2_loss(model, plain)(x, y, torch.Generator().manual_seed(1))
    assert float(loss_plain) == pytest.approx(float(torch.nn.functional.cross_entropy(model(x), y)), rel=1e-5)
    loss_overlaid, _ = tnr.stage2_loss(model, {**plain, "overlay": 0.5})(x, y, torch.Generator().manual_seed(1))
    expected = tnr.overlay(x, torch.Generator().manual_seed(1), 0.5)
    assert float(loss_overlaid) == pytest.approx(float(torch.nn.functional.cross_entropy(model(expected), y)), rel=1e-5)
    assert float(loss_overlaid) != pytest.approx(float(loss_plain), rel=1e-4)
    defaults = hyperparams.resolve(tnr.HYPERPARAMETERS, {})
    assert tnr.stage2_settings(defaults)["overlay"] == tnr.HYPERPARAMETERS["stage2Overlay"].default > 0  # on by default
    assert tnr.stage2_settings({**defaults, "stage2Overlay": 0.0})["overlay"] == 0.0


def test_the_overlay_applies_where_stage2_overlay_when_says():
    poisoned, inconclusive = {"isolationVerdict": "poisoned"}, {"isolationVerdict": "inconclusive"}
    default = hyperparams.resolve(tnr.HYPERPARAMETERS, {})
    assert tnr.overlay_strength(default, poisoned) == default["stage2Overlay"] > 0
    assert tnr.overlay_strength(default, inconclusive) == 0.0 and tnr.overlay_strength(default, None) == 0.0  # not called poisoned, or no verdict
    always = {**default, "stage2OverlayWhen": "always"}
    assert tnr.overlay_strength(always, inconclusive) == tnr.overlay_strength(always, None) == default["stage2Overlay"]


def make_context(job_datasets: dict, tmp_path: Path, **hp) -> RunContext:
    spec = parse_spec({
        "method": "TRAP_AND_REPLACE", "architecture": "small-cnn", "seed": 3, "device": "cpu", "target": 0,
        "data": {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]},
        "hyperparameters": {"stage1Epochs": 1, "stage2Epochs": 2, "batchSize": 128, "evalEvery": 0, "previewCount": 4, **hp},
    })
    return RunContext(spec=spec, workdir=tmp_path, device=pick_device("cpu"), emitter=Emitter(io.StringIO()), data=load_job_data(spec))


def test_stage2_freezes_stem_weights_and_bn_statistics_and_replaces_the_head(job_datasets, tmp_path):
    ctx = make_context(job_datasets, tmp_path)
    model = build_model(ctx, with_decoder=True)
    tnr.run_stage1(ctx, PhaseRunner(ctx), model)
    stem_before = {k: v.clone() for k, v in model.stem.state_dict().items()}
    trapped_head = {k: v.clone() for k, v in model.head.state_dict().items()}
    settings = tnr.stage2_settings(ctx.hp)
    tnr.prepare_stage2(ctx, model, settings)
    assert model.decoder is None
    fresh = {k: v.clone() for k, v in model.head.state_dict().items()}
    assert not torch.equal(fresh["fc.weight"], trapped_head["fc.weight"])
    assert all(not p.requires_grad for p in model.stem.parameters())
    tnr.run_stage2(ctx, PhaseRunner(ctx), model, settings)
    for key, value in model.stem.state_dict().items():
        assert torch.equal(value, stem_before[key]), f"stem tensor {key} changed in stage 2"
    assert any("running_mean" in k for k in stem_before)  # BN statistics were part of the comparison
    assert not torch.equal(model.head.state_dict()["fc.weight"], fresh["fc.weight"])  # the new head did train
    assert not any(k.startswith("decoder") for k in model.state_dict())


def test_stage2_recipes_resolve():
    base = {"stage2Epochs": None, "stage2BatchSize": None, "stage2Lr": None, "stage1Epochs": 7, "lr": 0.002, "stage2Overlay": 0.0}
    paper = tnr.stage2_settings({**base, "stage2Recipe": "paper"})
    assert (paper["epochs"], paper["batchSize"], paper["lr"], paper["cutmix"]) == (7, 32, 0.002, False)
    official = tnr.stage2_settings({**base, "stage2Recipe": "official"})
    assert (official["epochs"], official["batchSize"], official["lr"], official["cutmix"], official["dropout"]) == (100, 64, 0.03, True, 0.5)
    assert tnr.stage2_settings({**base, "stage2Recipe": "official", "stage2Epochs": 3, "stage2Lr": 0.1})["epochs"] == 3


def test_official_recipe_puts_dropout_in_the_new_head(job_datasets, tmp_path):
    ctx = make_context(job_datasets, tmp_path, stage2Recipe="official")
    model = build_model(ctx, with_decoder=True)
    tnr.prepare_stage2(ctx, model, tnr.stage2_settings(ctx.hp))
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.head.modules())
