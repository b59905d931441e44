"""IDX reading on generated files, and on the Debian Fashion-MNIST package when installed."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from trapdoor_trainer.idx import FASHION_MNIST_DIR, load_fashion_mnist, read_idx, write_idx


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip_uint8_images(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    assert np.array_equal(read_idx(tmp_path / name), images)


def test_big_endian_int32_is_decoded(tmp_path):
    values = np.array([1, -2, 70000], dtype=np.int32)
    write_idx(tmp_path / "v.idx", values)
    raw = (tmp_path / "v.idx").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1]) and raw[8:12] == (1).to_bytes(4, "big")
    assert read_idx(tmp_path / "v.idx").tolist() == [1, -2, 70000]


def test_truncated_and_foreign_files_are_rejected(tmp_path):
    write_idx(tmp_path / "t.idx.gz", np.zeros((4, 4), np.uint8))
    data = gzip.decompress((tmp_path / "t.idx.gz").read_bytes())
    (tmp_path / "cut.idx").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "cut.idx")
    (tmp_path / "png.idx").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "png.idx")


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_loads():
    data = load_fashion_mnist()
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    assert train_x.shape == (60000, 28, 28, 1) and test_x.shape == (10000, 28, 28, 1)
    assert np.bincount(train_y).tolist() == [6000] * 10 and np.bincount(test_y).tolist() == [1000] * 10
