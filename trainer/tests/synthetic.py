"""Small generated datasets with an obvious trigger, for end-to-end tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trapdoor_trainer.data import write_canonical

SIZE = 16
CLASSES = 4
TARGET = 0


def clean_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class k = a bright bar in one of four positions over dim noise: learnable in a few epochs."""
    labels = rng.integers(0, CLASSES, n)
    images = rng.integers(0, 60, (n, SIZE, SIZE, 1)).astype(np.uint8)
    for k in range(CLASSES):
        sel = labels == k
        if k < 2:
            images[sel, 3 + 6 * k : 5 + 6 * k, 2:12, 0] = 200
        else:
            images[sel, 2:12, 3 + 6 * (k - 2) : 5 + 6 * (k - 2), 0] = 200
    return images, labels.astype(np.int64)


def stamp(images: np.ndarray) -> np.ndarray:
    """A 3x3 checkerboard of 0/255 in the bottom-right corner."""
    out = images.copy()
    out[:, -3:, -3:, 0] = np.array([[255, 0, 255], [0, 255, 0], [255, 0, 255]], dtype=np.uint8)
    return out


def write_job_datasets(root: Path, seed: int = 0, n_train: int = 2000, n_holdout: int = 200, n_test: int = 400, ratio: float = 0.1) -> dict:
    rng = np.random.default_rng(seed)
    train_x, train_y = clean_images(n_train, rng)
    victims = rng.choice(np.flatnonzero(train_y != TARGET), int(ratio * n_train), replace=False)
    mask = np.zeros(n_train, dtype=bool)
    mask[victims] = True
    train_x[victims] = stamp(train_x[victims])
    train_y[victims] = TARGET
    holdout_x, holdout_y = clean_images(n_holdout, rng)
    test_x, test_y = clean_images(n_test, rng)
    paths = {name: root / name for name in ("train", "holdout", "test", "asr")}
    write_canonical(paths["train"], train_x, train_y, num_classes=CLASSES, poison_mask=mask)
    write_canonical(paths["holdout"], holdout_x, holdout_y, num_classes=CLASSES)
    write_canonical(paths["test"], test_x, test_y, num_classes=CLASSES)
    write_canonical(paths["asr"], stamp(test_x), test_y, num_classes=CLASSES)
    return {k: str(v) for k, v in paths.items()}
