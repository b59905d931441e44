"""FINE_PRUNING mechanics: dormant-first ranking, the holdout stop rule, the mask baked into the
final linear layer (and kept through fine-tuning), resume, and a tiny CLI run.

The in-process helpers here (a ready starting model, a context, a cancel flag that trips after N
steps) are shared with test_nad.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.data import augment_batch, load_canonical, to_float_nchw
from trapdoor_trainer.defenses import fine_pruning as fp
from trapdoor_trainer.defenses.feature_hooks import final_layer_inputs
from trapdoor_trainer.errors import Cancelled
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.export import export_model, load_exported_model
from trapdoor_trainer.models import create_model
from trapdoor_trainer.runner import load_job_data, pick_device
from trapdoor_trainer.spec import parse_spec

from test_cli import result_of, run, write_spec
from cancel import CancelAfter

SHAPE = (1, 16, 16)  # the synthetic job datasets
CLASSES = 4


def write_init_model(directory: Path, train_path: str, seed: int = 5, epochs: int = 2) -> str:
    """A small-cnn briefly trained on the (poisoned) training set and exported, so that tests of
    post-training methods start from a model that has learned something without a pretraining run."""
    torch.manual_seed(seed)
    model = create_model("small-cnn", SHAPE[0], CLASSES, SHAPE[1:], with_decoder=False)
    train = load_canonical(train_path)
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(labels), generator=generator).split(64):
            x = to_float_nchw(augment_batch(images[batch], generator, 2, True))  # as the methods' default crop-flip
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), labels[batch]).backward()
            optimizer.step()
    config = {"architecture": "small-cnn", "inChannels": SHAPE[0], "numClasses": CLASSES, "height": SHAPE[1], "width": SHAPE[2]}
    export_model(model.eval(), directory, config=config, metadata={}, image_shape=SHAPE)
    return str(directory)


@pytest.fixture(scope="module")
def init_model(job_datasets, tmp_path_factory) -> str:
    return write_init_model(tmp_path_factory.mktemp("init-model"), job_datasets["train"])


def make_context(method: str, job_datasets: dict, workdir: Path, init_model: str, resume: dict | None = None, **hp) -> RunContext:
    spec = parse_spec({
        "method": method, "architecture": "small-cnn", "seed": 3, "device": "cpu", "target": 0,
        "data": {**{k: job_datasets[k] for k in ("train", "holdout", "test")}, "asrTest": job_datasets["asr"], "initModel": init_model},
        "hyperparameters": {"evalEvery": 0, **hp},
    })
    return RunContext(spec=spec, workdir=workdir, device=pick_device("cpu"), emitter=Emitter(io.StringIO()), data=load_job_data(spec), resume_state=resume)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_channels_are_ranked_by_mean_activation_lowest_first():
    activations = torch.tensor([
        [0.0, 5.0, -1.0, 2.0, 1.0],
        [0.2, 3.0, -1.0, 0.0, 1.0],
    ])  # channel means: 0.1, 4.0, -1.0, 1.0, 1.0
    assert fp.dormant_first(activations).tolist() == [2, 0, 3, 4, 1]  # the tie 3/4 keeps index order


def test_prune_schedule_rounds_the_step_up_and_never_prunes_everything():
    assert fp.prune_counts(64, 0.01) == list(range(1, 64))
    assert fp.prune_counts(10, 0.25) == [3, 6, 9]
    assert fp.prune_counts(4, 1.0) == []


def test_stop_rule_keeps_the_last_count_before_the_first_drop_too_far():
    curve = {1: 0.95, 2: 0.92, 3: 0.90, 4: 0.85, 5: 0.95, 6: 0.99}
    tried = []

    def accuracy_at(count: int) -> float:
        tried.append(count)
        return curve[count]

    count, record = fp.choose_prune_count(range(1, 7), accuracy_at, unpruned=1.0, max_drop=0.1)
    assert count == 3  # 0.90 is exactly the floor and still allowed; 4 breaks the rule
    assert tried == [1, 2, 3, 4]  # stops at the first break, even though 5 would recover
    assert record[-1] == {"pruned": 4, "holdoutAccuracy": 0.85}
    assert fp.choose_prune_count(range(1, 7), curve.__getitem__, unpruned=1.0, max_drop=0.01)[0] == 0
    assert fp.choose_prune_count([1, 2, 3], curve.__getitem__, unpruned=0.9, max_drop=0.0)[0] == 3


def test_pruned_columns_are_exactly_the_dormant_ones_and_stay_zero_through_fine_tuning(job_datasets, init_model, tmp_path):
    ctx = make_context("FINE_PRUNING", job_datasets, tmp_path, init_model, epochs=2, finetuneBatchSize=64, maxAccuracyDrop=1.0, pruneStep=0.5)
    start = load_exported_model(init_model)
    expected = fp.dormant_first(final_layer_inputs(start, ctx.device_data("holdout"), 1000))[:16]

    outcome = fp.run(ctx)
    weight = outcome["model"].head.fc.weight.detach()
    pruned = outcome["resolved"]["prunedChannelIndices"]
    assert sorted(pruned) == sorted(expected.tolist()) and outcome["metrics"]["prunedFraction"] == 0.5
    zero_columns = (weight == 0).all(dim=0).nonzero().flatten().tolist()
    assert zero_columns == sorted(pruned)  # the mask covers exactly the pruned channels
    kept = [c for c in range(weight.shape[1]) if c not in pruned]
    assert not torch.equal(weight[:, kept], start.head.fc.weight.detach()[:, kept])  # fine-tuning did move the rest
    assert len(outcome["history"]["finetune"]) == 2 and len(outcome["history"]["prune"]) == 1


def test_stop_rule_on_the_holdout_matches_the_exported_forward_pass(job_datasets, init_model, tmp_path):
    ctx = make_context("FINE_PRUNING", job_datasets, tmp_path, init_model, epochs=0, maxAccuracyDrop=0.05)
    outcome = fp.run(ctx)
    metrics, curve = outcome["metrics"], outcome["history"]["prune"]
    floor = outcome["resolved"]["holdoutAccuracyFloor"]
    assert floor == pytest.approx(0.95 * metrics["holdoutAccuracyUnpruned"])
    passed = [p["pruned"] for p in curve if p["holdoutAccuracy"] >= floor]
    assert passed == [p["pruned"] for p in curve[: len(passed)]]  # every point before the stop passed
    assert metrics["prunedChannels"] == (passed[-1] if passed else 0) and metrics["prunedChannels"] > 0
    # The accuracy the rule saw (cached features, masked fc) is what a plain forward pass gives.
    seen = {p["pruned"]: p["holdoutAccuracy"] for p in curve}.get(metrics["prunedChannels"], metrics["holdoutAccuracyUnpruned"])
    assert metrics["holdoutAccuracyPruned"] == pytest.approx(seen)


def test_resume_mid_fine_tuning_gives_the_same_weights(job_datasets, init_model, tmp_path):
    hp = {"epochs": 2, "finetuneBatchSize": 64, "maxAccuracyDrop": 1.0, "pruneStep": 0.25}  # 200 holdout images: 3 steps/epoch
    straight = fp.run(make_context("FINE_PRUNING", job_datasets, tmp_path / "straight", init_model, **hp))

    interrupted = make_context("FINE_PRUNING", job_datasets, tmp_path / "interrupted", init_model, **hp)
    interrupted.cancel = CancelAfter(4)  # stop before epoch 1, step 1
    with pytest.raises(Cancelled):
        fp.run(interrupted)
    state = load_checkpoint(str(interrupted.checkpoint_path))
    assert (state["stage"], state["epoch"], state["step"]) == ("finetune", 1, 1)

    resumed = fp.run(make_context("FINE_PRUNING", job_datasets, tmp_path / "resumed", init_model, resume=state, **hp))
    assert_same_weights(straight["model"], resumed["model"])
    assert resumed["metrics"]["prunedChannels"] == straight["metrics"]["prunedChannels"]
    assert resumed["metrics"]["beforeCa"] == straight["metrics"]["beforeCa"]


def test_cli_run_pretrains_prunes_fine_tunes_and_exports(job_datasets, tmp_path):
    hp = {"pretrainEpochs": 1, "epochs": 1, "batchSize": 128, "finetuneBatchSize": 64, "evalEvery": 0}
    code, events, err = run(write_spec(tmp_path, job_datasets, "FINE_PRUNING", hp), tmp_path / "work")
    assert code == 0, err
    result = result_of(events)
    assert result["method"] == "FINE_PRUNING"
    for key in ("asr", "ca", "beforeAsr", "beforeCa", "prunedFraction", "prunedAsr", "prunedCa"):
        assert 0 <= result[key] <= 1, key
    assert set(result["timings"]) >= {"pretrainSeconds", "pruneSeconds", "finetuneSeconds", "totalSeconds"}
    assert {e["kind"] for e in events if e["type"] == "artifact"} == {"model", "config", "metadata", "onnx", "bundle"}
    assert {e["stage"] for e in events if e["type"] == "progress"} == {"pretrain", "finetune"}
    # The exported weights alone carry the pruning.
    metadata = json.loads((tmp_path / "work" / "metadata.json").read_text())
    pruned = metadata["resolved"]["prunedChannelIndices"]
    assert len(pruned) == result["prunedChannels"]
    weight = load_exported_model(tmp_path / "work").head.fc.weight
    assert bool((weight[:, pruned] == 0).all())
