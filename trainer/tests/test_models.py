"""Architectures: the paper's WRN-16-1 split, the quirk, padding, other splits."""

from __future__ import annotations

import pytest
import torch

from trapdoor_trainer.models import create_model


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_wrn16_1_split_matches_the_reference_parameter_counts():
    model = create_model("wrn16-1", 3, 10, (32, 32))
    assert (count(model.stem), count(model.head), count(model.decoder)) == (100736, 74890, 34339)
    assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 64, 8, 8)


@pytest.mark.parametrize("block, shape", [(4, (32, 16, 16)), (5, (64, 8, 8)), (6, (64, 8, 8))])
def test_split_points(block, shape):
    model = create_model("wrn16-1", 3, 10, (32, 32), stem_end_block=block)
    logits, recon = model.forward_with_reconstruction(torch.rand(2, 3, 32, 32))
    assert model.features(torch.rand(2, 3, 32, 32)).shape[1:] == shape
    assert logits.shape == (2, 10) and recon.shape == (2, 3, 32, 32)
    assert 0 <= float(recon.min()) and float(recon.max()) <= 1


def test_faithful_quirk_makes_the_first_bn_of_channel_changing_blocks_inert():
    torch.manual_seed(0)
    model = create_model("wrn16-1", 3, 10, (32, 32), faithful_wrn=True)
    x = torch.rand(4, 3, 32, 32)
    model.train()
    model(x).sum().backward()
    quirky = model.stem.blocks[2].bn1  # block2[0]: 16 -> 32 channels
    assert quirky.weight.grad is None or float(quirky.weight.grad.abs().sum()) == 0
    assert float(model.stem.blocks[1].bn1.weight.grad.abs().sum()) > 0
    plain = create_model("wrn16-1", 3, 10, (32, 32), faithful_wrn=False)
    plain.train()
    plain(x).sum().backward()
    assert float(plain.stem.blocks[2].bn1.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("arch, size, channels", [("wrn16-1", (28, 28), 1), ("wrn16-1", (30, 26), 1), ("small-cnn", (15, 17), 3), ("resnet18", (36, 36), 3)])
def test_sizes_that_do_not_divide_are_padded_inside_the_model(arch, size, channels):
    model = create_model(arch, channels, 5, size)
    logits, recon = model.forward_with_reconstruction(torch.rand(2, channels, *size))
    assert logits.shape == (2, 5) and recon.shape == (2, channels, *size)


def test_resnet_split_keeps_the_last_block_in_the_head():
    model = create_model("resnet34", 3, 12, (32, 32))
    blocks_in_stem = sum(1 for m in model.stem if m.__class__.__name__ == "ResNetBasicBlock")
    assert blocks_in_stem == 3 + 4 + 6 + 3 - 1
    assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 512, 4, 4)


def test_replace_head_gives_a_fresh_head_of_the_same_shape():
    model = create_model("wrn16-1", 1, 10, (28, 28))
    old = {k: v.clone() for k, v in model.head.state_dict().items()}
    model.replace_head()
    new = model.head.state_dict()
    assert {k: v.shape for k, v in old.items()} == {k: v.shape for k, v in new.items()}
    assert not torch.equal(old["body.0.conv1.weight"], new["body.0.conv1.weight"])
