"""ANP mechanics: the noisy-BN surgery, bounded perturbations, clipped masks, pruning and the
holdout threshold rule, resume, and a tiny run through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.defenses import anp
from trapdoor_trainer.defenses.common import starting_model
from trapdoor_trainer.export import load_exported_model
from trapdoor_trainer.models import create_model
from trapdoor_trainer.phases import PhaseRunner

from test_cli import result_of, run, write_spec
from test_ibau import assert_same_weights, method_context, straight_and_resumed


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("small-cnn", 1, 4, (16, 16), with_decoder=False)
    with torch.no_grad():  # non-trivial statistics and affine parameters
        for layer in anp.norm_layers(model):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
    return model


def test_full_masks_without_noise_reproduce_the_model_and_leave_its_statistics_alone():
    model, x = small_model(), torch.rand(8, 1, 16, 16)
    noisy = anp.NoisyBatchNorm(model)
    assert len(noisy.layers) == 4
    for train in (False, True):
        model.train(train)
        stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        with torch.no_grad(), noisy.attached():
            patched = model(x)
        for key, value in stats.items():  # not even the batch-statistics (train-mode) forward moves them
            assert torch.equal(model.state_dict()[key], value), key
        with torch.no_grad():
            assert torch.allclose(model(x), patched, atol=1e-5)
    assert all("forward" not in vars(layer) for layer in noisy.layers)  # detached again


def test_a_zero_mask_is_the_same_as_pruning_that_channel():
    model, x = small_model().eval(), torch.rand(8, 1, 16, 16)
    noisy = anp.NoisyBatchNorm(model)
    with torch.no_grad():
        noisy.masks[1][[2, 5]] = 0.0
        with noisy.attached():
            masked = model(x)
        anp.prune_channels(noisy.layers, [m.detach() for m in noisy.masks], 0.5, prune_bias=False)
        assert torch.allclose(model(x), masked, atol=1e-5)


def test_the_perturbation_applies_the_noise_multiplicatively():
    model, x = small_model().eval(), torch.rand(4, 1, 16, 16)
    noisy = anp.NoisyBatchNorm(model)
    layer = noisy.layers[0]
    with torch.no_grad():
        noisy.weight_noise[0].fill_(0.25)
        noisy.bias_noise[0].fill_(-0.5)
        noisy.perturbed = True
        with noisy.attached():
            perturbed = model(x)
        layer.weight.mul_(1.25)
        layer.bias.mul_(0.5)
        assert torch.allclose(model(x), perturbed, atol=1e-5)


@pytest.mark.parametrize("architecture", ["small-cnn", "wrn16-1"])  # WRN: some BN outputs are discarded (faithfulWrn)
def test_perturbations_stay_within_eps(architecture):
    torch.manual_seed(0)
    model = create_model(architecture, 1, 4, (16, 16), with_decoder=False).train()
    for p in model.parameters():
        p.requires_grad_(False)
    noisy = anp.NoisyBatchNorm(model)
    x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 4, (16,))
    with noisy.attached():
        anp.perturb_adversarially(model, noisy, x, y, eps=0.4, steps=3, generator=torch.Generator().manual_seed(0))
    values = torch.cat([t.flatten() for t in noisy.noise])
    assert float(values.abs().max()) == pytest.approx(0.4)  # signed steps from a uniform start reach the bound ...
    assert float(values.abs().max()) <= 0.4 + 1e-7  # ... and never pass it
    assert not noisy.perturbed and not any(t.requires_grad for t in noisy.noise)


def test_pruning_zeroes_exactly_the_channels_below_the_threshold():
    model = small_model()
    layers = anp.norm_layers(model)
    levels = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])  # exact in binary: 0.25 sits on the threshold
    masks = [levels[torch.arange(layer.num_features) % 5] for layer in layers]
    before = [(layer.weight.clone(), layer.bias.clone()) for layer in layers]
    pruned = anp.prune_channels(layers, masks, 0.25, prune_bias=False)
    assert pruned == sum(int((m == 0).sum()) for m in masks) > 0  # strictly below: the 0.25s stay
    for layer, mask, (weight, bias) in zip(layers, masks, before):
        below = mask < 0.25
        assert (layer.weight[below] == 0).all() and torch.equal(layer.weight[~below], weight[~below])
        assert torch.equal(layer.bias, bias)  # the shift stays by default
    anp.prune_channels(layers, masks, 0.25, prune_bias=True)
    assert all((layer.bias[mask < 0.25] == 0).all() and (layer.bias[mask >= 0.25] != 0).all() for layer, mask in zip(layers, masks))


def test_threshold_rule_takes_the_largest_threshold_within_the_allowed_drop():
    sweep = [(0.05, 0.95), (0.1, 0.93), (0.15, 0.85), (0.2, 0.91), (0.25, 0.5)]
    assert anp.choose_threshold(sweep, reference_accuracy=1.0, max_drop=0.1) == 0.2  # not the first violation's predecessor
    assert anp.choose_threshold(sweep, reference_accuracy=1.0, max_drop=0.01) == 0.0  # nothing qualifies: prune nothing
    assert anp.choose_threshold(sweep, reference_accuracy=0.5, max_drop=0.0) == 0.25
    grid = anp.threshold_grid(0.05, 0.9)
    assert len(grid) == 18 and grid[0] == 0.05 and grid[-1] == 0.9


def test_mask_epochs_follow_the_iteration_budget_unless_given():
    hp = {"epochs": None, "maskIterations": 2000, "maskBatchSize": 128}
    assert anp.mask_epochs(hp, 2500) == 106  # 19 steps a pass
    assert anp.mask_epochs(hp, 100) == 2000  # one (partial) batch a pass
    assert anp.mask_epochs({**hp, "epochs": 3}, 2500) == 3


# --- through the CLI, and in process from its exported model ---------------------------------

TINY = {"pretrainEpochs": 1, "batchSize": 64, "lr": 3e-3, "maskIterations": 4, "maskBatchSize": 64, "evalEvery": 0}


@pytest.fixture(scope="module")
def cli_run(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anp")
    code, events, err = run(write_spec(tmp, job_datasets, "ANP", {**TINY, "pruneThreshold": 0.99}), tmp / "work")
    assert code == 0, err
    return result_of(events), events, tmp / "work"


def test_cli_run_optimises_masks_prunes_and_exports_the_pruned_model(cli_run):
    result, events, workdir = cli_run
    assert result["method"] == "ANP"
    for key in ("asr", "ca", "beforeAsr", "beforeCa", "holdoutAccuracy", "holdoutAccuracyUnpruned"):
        assert 0 <= result[key] <= 1, key
    assert result["mse"] is None and result["pruneThreshold"] == 0.99
    assert 0 < result["prunedChannels"] <= result["totalChannels"] == 112
    assert {e["stage"] for e in events if e["type"] == "progress"} == {"pretrain", "mask"}
    assert {e["kind"] for e in events if e["type"] == "artifact"} >= {"model", "config", "metadata", "onnx"}
    # Pruning is baked into the exported weights: as many zero BN scales as pruned channels.
    exported = load_exported_model(workdir)
    zeros = sum(int((layer.weight == 0).sum()) for layer in anp.norm_layers(exported))
    assert zeros == result["prunedChannels"]
    metadata = json.loads((workdir / "metadata.json").read_text())
    assert metadata["resolved"]["thresholdRule"] == "fixed" and metadata["resolved"]["epochs"] == 2


def test_masks_are_clipped_to_the_unit_interval(job_datasets, tmp_path, cli_run):
    ctx = method_context(job_datasets, tmp_path, "ANP", {**TINY, "recipe": "adam", "maskLr": 1.0, "epochs": 2}, init_model=str(cli_run[2]))
    runner = PhaseRunner(ctx)
    model, _ = starting_model(ctx, runner)
    for p in model.parameters():
        p.requires_grad_(False)
    noisy = anp.NoisyBatchNorm(model)
    anp.optimise_masks(ctx, runner, model, noisy, 2)
    values = noisy.mask_values()
    assert float(values.min()) == 0.0 and float(values.max()) == 1.0  # Adam steps of ~1 overshoot both ends
    assert float(values.mean()) < 1.0


def test_resume_mid_pass_gives_the_same_masks_and_model(job_datasets, tmp_path, cli_run):
    hp = {**TINY, "epochs": 2, "pruneThreshold": 0.999}
    straight, resumed, straight_ctx = straight_and_resumed(job_datasets, tmp_path, "ANP", hp, str(cli_run[2]), ("mask", 1, 1))
    assert_same_weights(straight["model"], resumed["model"])
    masks = [load_checkpoint(str(d / "checkpoints" / "latest.pt"))["masks"] for d in (tmp_path / "straight", tmp_path / "resumed")]
    assert all(torch.equal(a, b) for a, b in zip(*masks))
    assert straight["metrics"]["prunedChannels"] == resumed["metrics"]["prunedChannels"] > 0
