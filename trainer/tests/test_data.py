"""Canonical datasets and batched augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trapdoor_trainer.data import augment_batch, holdout_split, load_canonical, write_canonical
from trapdoor_trainer.errors import SpecError


def test_round_trip_and_manifest(tmp_path):
    images = np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3)
    manifest = write_canonical(tmp_path, images, np.array([1, 0]), num_classes=3, poison_mask=np.array([True, False]))
    assert (manifest["count"], manifest["height"], manifest["width"], manifest["channels"]) == (2, 5, 6, 3)
    assert set(manifest["sha256"]) == {"images.npy", "labels.npy", "poison_mask.npy"}
    ds = load_canonical(tmp_path)
    assert np.array_equal(ds.images, images) and ds.labels.tolist() == [1, 0] and ds.poison_mask.tolist() == [True, False]


def test_tampered_file_is_rejected(tmp_path):
    write_canonical(tmp_path, np.zeros((4, 4, 4, 1), np.uint8), np.zeros(4), num_classes=2)
    np.save(tmp_path / "labels.npy", np.ones(4, dtype=np.int64))
    with pytest.raises(SpecError, match="sha256"):
        load_canonical(tmp_path, "data.train")


def test_labels_out_of_range_and_shape_mismatch_are_rejected(tmp_path):
    write_canonical(tmp_path / "a", np.zeros((4, 4, 4, 1), np.uint8), np.array([0, 1, 2, 5]), num_classes=3)
    with pytest.raises(SpecError, match="labels must lie"):
        load_canonical(tmp_path / "a")
    write_canonical(tmp_path / "b", np.zeros((4, 4, 4, 1), np.uint8), np.zeros(4), num_classes=2)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["count"] = 5
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpecError, match="manifest says"):
        load_canonical(tmp_path / "b")


def test_pickled_arrays_are_refused(tmp_path):
    write_canonical(tmp_path, np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2), num_classes=2)
    np.save(tmp_path / "labels.npy", np.array([object(), object()], dtype=object), allow_pickle=True)
    with pytest.raises(SpecError):
        load_canonical(tmp_path, verify=False)


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    images = torch.arange(1, 2 * 6 * 6 + 1, dtype=torch.uint8).reshape(2, 6, 6, 1)
    out = augment_batch(images, torch.Generator().manual_seed(3), crop_pad=2, flip=False)
    padded = torch.nn.functional.pad(images, (0, 0, 2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_mirrors_columns_and_is_seeded():
    images = torch.arange(64 * 4 * 4, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(64, 4, 4, 1)
    a = augment_batch(images, torch.Generator().manual_seed(5), crop_pad=0, flip=True)
    b = augment_batch(images, torch.Generator().manual_seed(5), crop_pad=0, flip=True)
    assert torch.equal(a, b)
    flipped = [not torch.equal(a[i], images[i]) for i in range(64)]
    assert 10 < sum(flipped) < 54
    for i in range(64):
        assert torch.equal(a[i], images[i].flip(1)) or torch.equal(a[i], images[i])


def test_holdout_is_the_last_fraction():
    train, holdout = holdout_split(100, 0.05)
    assert holdout.tolist() == [95, 96, 97, 98, 99] and len(train) == 95
