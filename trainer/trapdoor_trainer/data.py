"""Canonical datasets on disk, and device-resident batching with batched augmentation.

A canonical dataset is a directory with `images.npy` (uint8 N x H x W x C), `labels.npy`
(int64 N), optional `poison_mask.npy` (bool N) and `manifest.json` (count, height, width,
channels, numClasses, classNames, sha256 of each file). The service's ingest writes it, the
trainer reads it, the `poison` command writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .errors import SpecError

DATA_FILES = ("images.npy", "labels.npy", "poison_mask.npy")


@dataclass
class CanonicalDataset:
    images: np.ndarray  # uint8 N x H x W x C
    labels: np.ndarray  # int64 N
    num_classes: int
    class_names: list
    poison_mask: Optional[np.ndarray] = None
    sha256: Optional[dict] = None

    @property
    def shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_canonical(
    directory: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    class_names: Optional[Sequence[str]] = None,
    poison_mask: Optional[np.ndarray] = None,
    extra: Optional[dict] = None,
) -> dict:
    """Write a canonical dataset and return its manifest."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if images.ndim == 3:
        images = images[..., None]
    np.save(out / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    np.save(out / "labels.npy", np.asarray(labels, dtype=np.int64))
    if poison_mask is not None:
        np.save(out / "poison_mask.npy", np.asarray(poison_mask, dtype=bool))
    manifest = {
        "count": int(images.shape[0]),
        "height": int(images.shape[1]),
        "width": int(images.shape[2]),
        "channels": int(images.shape[3]),
        "numClasses": int(num_classes),
        "classNames": list(class_names) if class_names is not None else [str(i) for i in range(num_classes)],
        "classHistogram": np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist(),
        "sha256": {name: sha256_file(out / name) for name in DATA_FILES if (out / name).exists()},
        **(extra or {}),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def load_canonical(directory: str | os.PathLike, field: str = "data", verify: bool = True) -> CanonicalDataset:
    """Load and check a canonical dataset; any inconsistency is a SpecError naming `field`."""
    root = Path(directory)
    if not root.is_dir():
        raise SpecError(field, f"dataset directory {str(root)!r} does not exist")
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except FileNotFoundError:
        raise SpecError(field, f"{root}/manifest.json is missing") from None
    except json.JSONDecodeError as e:
        raise SpecError(field, f"{root}/manifest.json is not valid JSON: {e}") from None
    hashes = manifest.get("sha256") or {}
    if verify:
        for name, expected in hashes.items():
            if (root / name).exists() and sha256_file(root / name) != expected:
                raise SpecError(field, f"{name} does not match the sha256 in its manifest (corrupted or replaced)")
    try:
        # allow_pickle=False: a canonical dataset never carries Python objects.
        images = np.load(root / "images.npy", allow_pickle=False)
        labels = np.load(root / "labels.npy", allow_pickle=False)
        mask_path = root / "poison_mask.npy"
        poison_mask = np.load(mask_path, allow_pickle=False) if mask_path.exists() else None
    except (OSError, ValueError) as e:
        raise SpecError(field, f"cannot read dataset arrays in {root}: {e}") from None
    num_classes = int(manifest.get("numClasses", 0))
    _check_arrays(field, images, labels, poison_mask, num_classes, manifest)
    return CanonicalDataset(
        images=images,
        labels=labels.astype(np.int64, copy=False),
        num_classes=num_classes,
        class_names=list(manifest.get("classNames") or [str(i) for i in range(num_classes)]),
        poison_mask=poison_mask,
        sha256=hashes,
    )


def _check_arrays(field, images, labels, poison_mask, num_classes, manifest) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise SpecError(field, f"images.npy must be uint8 N x H x W x C, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise SpecError(field, f"labels.npy must be integer with {images.shape[0]} entries, got {labels.dtype} {labels.shape}")
    if images.shape[0] == 0:
        raise SpecError(field, "dataset is empty")
    if num_classes < 2:
        raise SpecError(field, "manifest numClasses must be at least 2")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise SpecError(field, f"labels must lie in [0, {num_classes}), found {int(labels.min())}..{int(labels.max())}")
    if poison_mask is not None and (poison_mask.dtype != np.bool_ or poison_mask.shape != labels.shape):
        raise SpecError(field, "poison_mask.npy must be bool with one entry per image")
    declared = (manifest.get("count"), manifest.get("height"), manifest.get("width"), manifest.get("channels"))
    if declared != tuple(int(v) for v in images.shape):
        raise SpecError(field, f"manifest says count/height/width/channels {declared}, arrays are {tuple(images.shape)}")


class DeviceData:
    """A dataset held on the training device as uint8 N x H x W x C, batched by tensor ops.

    Keeping uint8 on the device and converting per batch moves a quarter of the bytes a float
    copy would, and the whole of Fashion-MNIST or CIFAR-10 fits easily.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device):
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.device = device

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def steps(self, batch_size: int, drop_last: bool) -> int:
        n = len(self)
        if drop_last and n >= batch_size:
            return n // batch_size
        return (n + batch_size - 1) // batch_size


def to_float_nchw(images_u8: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 N x H x W x C -> float N x C x H x W in [0,1]; channels-last memory keeps the NHWC bytes in place."""
    x = images_u8.permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def augment_batch(images_u8: torch.Tensor, generator: torch.Generator, crop_pad: int, flip: bool) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip for a whole uint8 NHWC batch at once.

    Offsets come from a CPU generator seeded per step, so a resumed run draws the same
    augmentation as an uninterrupted one.
    """
    n, h, w, _ = images_u8.shape
    device = images_u8.device
    out = images_u8
    if crop_pad > 0:
        padded = torch.nn.functional.pad(out, (0, 0, crop_pad, crop_pad, crop_pad, crop_pad))
        offsets = torch.randint(0, 2 * crop_pad + 1, (2, n), generator=generator).to(device)
        rows = offsets[0][:, None] + torch.arange(h, device=device)[None, :]
        cols = offsets[1][:, None] + torch.arange(w, device=device)[None, :]
        batch_index = torch.arange(n, device=device)[:, None, None]
        out = padded[batch_index, rows[:, :, None], cols[:, None, :]]
    if flip:
        flip_mask = (torch.rand(n, generator=generator) < 0.5).to(device)
        out = torch.where(flip_mask[:, None, None, None], out.flip(2), out)
    return out


def holdout_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """T&R's split: the last `int(fraction * n)` samples form the holdout, the rest train."""
    k = int(fraction * n)
    return np.arange(0, n - k), np.arange(n - k, n)
