"""Phase recipes: the schedules keep a published recipe's shape at any epoch count, the loop builds
the optimiser a recipe names, and every baseline defaults to its published recipe."""

from __future__ import annotations

import pytest
import torch

from test_phases import events_of, loop, make_context, toy_data
from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.defenses import abl, anp, fine_pruning, nad
from trapdoor_trainer.phases import PhaseRunner
from trapdoor_trainer.recipes import ADAM_COSINE, PhaseRecipe, Recipe


def test_cosine_matches_torch_cosine_annealing():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7)
    for epoch in range(7):
        assert ADAM_COSINE.lr_at(0.3, epoch, 7) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()


def test_step_drops_are_shares_of_the_phase_so_a_published_schedule_scales():
    nad_like = Recipe("sgd", momentum=0.9, schedule="step", drops=((0.1, 0.1),))
    # NAD's 20 epochs: 0.1 for epochs 0-1, then 0.01 (the official schedule)
    assert [nad_like.lr_at(0.1, e, 20) for e in range(4)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    # at 4 epochs the first still runs at the high rate
    assert [nad_like.lr_at(0.1, e, 4) for e in range(4)] == pytest.approx([0.1, 0.01, 0.01, 0.01])
    abl_like = Recipe("sgd", schedule="step", drops=((2 / 3, 0.1),))
    rates = [abl_like.lr_at(0.1, e, 60) for e in range(60)]
    assert rates[39] == pytest.approx(0.1) and rates[40] == pytest.approx(0.01)  # ABL: 0.1 below epoch 40 of 60
    assert Recipe("sgd", schedule="constant").lr_at(0.2, 5, 6) == 0.2


def test_unknown_optimiser_or_schedule_is_refused():
    with pytest.raises(ValueError):
        Recipe("rmsprop")
    with pytest.raises(ValueError):
        Recipe("sgd", schedule="linear")


def test_the_loop_builds_the_recipes_optimiser_and_steps_its_schedule(job_datasets, tmp_path):
    ctx = make_context(job_datasets, tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    phase = loop("sgd", model, toy_data())
    phase.recipe = Recipe("sgd", momentum=0.9, nesterov=True, schedule="step", drops=((0.5, 0.1),))
    PhaseRunner(ctx).run(phase)
    rates = sorted({(e["epoch"], e["lr"]) for e in events_of(ctx) if e["type"] == "progress"})
    assert rates == [(0, pytest.approx(0.05)), (1, pytest.approx(0.005))]
    saved = load_checkpoint(str(ctx.checkpoint_path))
    state = saved["optimizer"]["state"]
    assert state and all("momentum_buffer" in s and "exp_avg" not in s for s in state.values())  # SGD's state, not Adam's
    assert saved["optimizer"]["param_groups"][0]["nesterov"] is True


def test_every_baseline_defaults_to_its_published_recipe_and_keeps_the_old_one_on_request():
    cases = [
        (fine_pruning.FINETUNE_RECIPE, ("finetuneLr", "finetuneWeightDecay"), fine_pruning.HYPERPARAMETERS, ("sgd", 0.01, 5e-4, "cosine")),
        (nad.NAD_RECIPE, ("distillLr", "distillWeightDecay"), nad.HYPERPARAMETERS, ("sgd", 0.01, 1e-4, "step")),
        (anp.MASK_RECIPE, ("maskLr", None), anp.HYPERPARAMETERS, ("sgd", 0.2, 0.0, "constant")),
        (abl.RECIPES[abl.ISOLATION], ("lr", "weightDecay"), abl.HYPERPARAMETERS, ("sgd", 0.1, 1e-4, "constant")),
        (abl.RECIPES[abl.FINETUNE], ("lr", "weightDecay"), abl.HYPERPARAMETERS, ("sgd", 0.1, 1e-4, "step")),
        (abl.RECIPES[abl.UNLEARN], ("unlearnLr", "weightDecay"), abl.HYPERPARAMETERS, ("sgd", 5e-4, 1e-4, "constant")),
    ]
    for phase, keys, table, (optimizer, lr, weight_decay, schedule) in cases:
        defaults = {k: p.default for k, p in table.items()}
        assert defaults["recipe"] == "published"
        recipe, got_lr, got_wd = phase.resolve(defaults, *keys)
        assert (recipe.optimizer, got_lr, got_wd, recipe.schedule) == (optimizer, lr, pytest.approx(weight_decay) if keys[1] else weight_decay, schedule)
        old, old_lr, _ = phase.resolve({**defaults, "recipe": "adam"}, *keys)
        assert old == ADAM_COSINE and old_lr == phase.adam_lr
        # a job's own rate wins over either recipe's
        assert phase.resolve({**defaults, keys[0]: 0.123}, *keys)[1] == 0.123


def test_describe_states_what_ran():
    phase = PhaseRecipe(Recipe("sgd", momentum=0.9, schedule="step", drops=((0.5, 0.1),)), published_lr=0.1, published_weight_decay=1e-4)
    assert phase.describe({"recipe": "published"}) == {
        "optimizer": "sgd", "lr": 0.1, "weightDecay": 1e-4, "schedule": "step", "momentum": 0.9, "nesterov": False, "drops": [[0.5, 0.1]],
    }
    assert phase.describe({"recipe": "adam"}) == {"optimizer": "adam", "lr": 1e-3, "weightDecay": 5e-4, "schedule": "cosine"}
