"""Everything a defense needs to run one job: spec, device, data, events, checkpoints, cancel flag."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from . import distributed
from .checkpoint import save_checkpoint
from .data import CanonicalDataset, DeviceData
from .events import Emitter
from .spec import RunSpec


class CancelFlag:
    """Set by SIGTERM; the training loop polls it between steps and stops at a safe point."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.requested = True


@dataclass
class JobData:
    train: CanonicalDataset
    holdout: CanonicalDataset
    test: CanonicalDataset
    asr_images: Optional[np.ndarray]  # triggered non-target test images, true labels dropped
    target: Optional[int]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.train.shape
        return (c, h, w)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


@dataclass
class RunContext:
    spec: RunSpec
    workdir: Path
    device: torch.device
    emitter: Emitter
    data: JobData
    cancel: CancelFlag = field(default_factory=CancelFlag)
    resume_state: Optional[dict] = None  # the checkpoint to continue from; read by PhaseRunner alone
    amp_dtype: Optional[torch.dtype] = None
    preview_paths: list = field(default_factory=list)
    health_paths: list = field(default_factory=list)  # T&R's health.json / health.png
    _device_cache: dict = field(default_factory=dict)

    @property
    def hp(self) -> dict:
        return self.spec.hyperparameters

    @property
    def checkpoint_path(self) -> Path:
        return self.workdir / "checkpoints" / "latest.pt"

    def device_data(self, name: str) -> Optional[DeviceData]:
        """Device copies of the job's datasets, made once: 'train', 'holdout', 'test', 'asr', 'train+holdout'."""
        if name not in self._device_cache:
            d = self.data
            if name == "asr":
                if d.asr_images is None:
                    return None
                labels = np.full(len(d.asr_images), d.target, dtype=np.int64)
                self._device_cache[name] = DeviceData(d.asr_images, labels, self.device)
            elif name == "train+holdout":
                images = np.concatenate([d.train.images, d.holdout.images])
                labels = np.concatenate([d.train.labels, d.holdout.labels])
                self._device_cache[name] = DeviceData(images, labels, self.device)
            else:
                ds = getattr(d, name)
                self._device_cache[name] = DeviceData(ds.images, ds.labels, self.device)
        return self._device_cache[name]

    def save_checkpoint(self, state: dict[str, Any], *, stage: str, epoch: int, step: int) -> None:
        if not distributed.is_main():
            return  # rank 0 holds the same state and writes it
        save_checkpoint(self.checkpoint_path, {"method": self.spec.method, "seed": self.spec.seed, "stage": stage, "epoch": epoch, "step": step, **state})
        self.emitter.checkpoint(str(self.checkpoint_path), stage=stage, epoch=epoch, step=step)
