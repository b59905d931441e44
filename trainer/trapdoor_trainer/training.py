"""The one training loop every method uses. A `Phase` declares a gradient loop: what differs
between methods (data, loss, trainable parameters, module modes), what a checkpoint of it holds
(`saves`) and what it reports (per-epoch metrics, a summary at the end). `train_phase` runs the
steps and emits progress and metric events; `PhaseRunner` (phases.py) calls it and owns the
checkpoints, resuming and skipping.

Determinism: every step re-seeds torch and its augmentation generator from
(seed, phase, epoch, step), so a run resumed from a mid-epoch checkpoint computes exactly what an
uninterrupted run would have. Shuffling is seeded per epoch the same way.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from . import distributed
from .context import RunContext
from .data import DeviceData, augment_batch, to_float_nchw
from .errors import Cancelled
from .metrics import autocast_for
from .recipes import ADAM_COSINE, Recipe

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class Stateful(Protocol):
    """What a phase can save: torch modules, or a method's own state object (ANP's masks)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


@dataclass
class Phase:
    """A gradient loop over `epochs` passes of `data`, with `recipe`'s optimiser and schedule
    (Adam + cosine unless the method follows another published recipe)."""

    name: str  # "stage1", "stage2", "train", ...: the stage of its events and checkpoints
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    data: DeviceData
    parameters: list
    loss_fn: LossFn  # (x in [0,1] NCHW, labels, step generator) -> (loss, named terms)
    set_modes: Callable[[], None]  # train/eval modes for this phase (stage 2 keeps the stem in eval)
    # What a checkpoint written in this phase holds, by checkpoint key: state_dict() of each, given
    # back to load_state_dict() on resume. Everything a resumed job needs to continue this phase
    # and the later ones (beyond the finished phases' results) must be here.
    saves: dict[str, Stateful]
    augment: str = "crop-flip"
    on_epoch_end: Optional[Callable[[int], dict]] = None  # returns named metrics for that epoch
    summary: Optional[Callable[[], dict]] = None  # the phase's result beyond history and timing, once it ends
    drop_last: bool = True
    # When set, BatchNorm layers this phase trains get exact running statistics at the end (see
    # recalibrate_batchnorm); the module is called on unaugmented training batches.
    model: Optional[torch.nn.Module] = None
    recipe: Recipe = ADAM_COSINE


@dataclass
class LoopStart:
    """Where `train_phase` begins: (0, 0) for a fresh phase, a checkpoint's position on resume."""

    epoch: int = 0
    step: int = 0
    optimizer: Optional[dict] = None
    history: list = field(default_factory=list)


# (epoch, step, optimizer state, history so far): write a checkpoint at that position.
SaveFn = Callable[[int, int, dict, list], None]


def derive_seed(*parts) -> int:
    """A 63-bit seed from the job seed and a position (phase, epoch, step)."""
    words = [p if isinstance(p, int) else int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:8], "little") for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]) >> 1


def crop_padding(height: int) -> int:
    """4 pixels on 32x32 images, scaled with the image size."""
    return max(1, int(round(4 * height / 32)))


def compiled(loss_fn: LossFn) -> LossFn:
    """The loss (the model's forward inside it) through `torch.compile` when TRAPDOOR_COMPILE names
    a mode ("default", "reduce-overhead" for CUDA graphs, "max-autotune"): fewer, fused kernel
    launches for WRN-16-1's small kernels on a GPU. PyTorch 2.x only and off by default: the GPU
    benchmark (bench/gpu.sh) measures it before it may become a default."""
    mode = os.environ.get("TRAPDOOR_COMPILE", "")
    if not mode:
        return loss_fn
    if not hasattr(torch, "compile"):
        raise RuntimeError(f"TRAPDOOR_COMPILE={mode} needs PyTorch 2.x; this is {torch.__version__}")
    return torch.compile(loss_fn, mode=mode)


def make_optimizer(phase: Phase) -> torch.optim.Optimizer:
    return phase.recipe.make(phase.parameters, phase.lr, phase.weight_decay)


def train_phase(ctx: RunContext, phase: Phase, start: LoopStart, save: SaveFn) -> dict:
    """Train `phase` from `start`; returns {"history", "seconds", "imagesPerSecond"} (of this
    attempt's steps). Calls `save` after every epoch and, on SIGTERM, before raising Cancelled."""
    seed = ctx.spec.seed
    optimizer = make_optimizer(phase)
    if start.optimizer is not None:
        optimizer.load_state_dict(start.optimizer)
    history = list(start.history)
    crop = crop_padding(phase.data.images.shape[1]) if "crop" in phase.augment else 0
    flip = "flip" in phase.augment
    steps = phase.data.steps(phase.batch_size, phase.drop_last)
    n = len(phase.data)
    processed, train_seconds = 0, 0.0
    report_every = max(1, steps // 10)
    device = phase.data.device
    # Several processes (distributed.py): each computes its share of every global batch.
    parallel = distributed.is_distributed()
    loss_fn = distributed.data_parallel_loss(phase.parameters, phase.loss_fn, device) if parallel else compiled(phase.loss_fn)

    for epoch in range(start.epoch, phase.epochs):
        last_epoch = epoch + 1 == phase.epochs
        lr = phase.recipe.lr_at(phase.lr, epoch, phase.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, phase.name, epoch))).to(phase.data.device)
        phase.set_modes()
        # Loss terms summed on the device; read back only when reported, so a GPU step never
        # waits for the host (a float() per term per step is a synchronisation each).
        on_device: dict[str, torch.Tensor] = {}
        first_step = start.step if epoch == start.epoch else 0
        epoch_start = time.perf_counter()
        for step in range(first_step, steps):
            stop = ctx.cancel.requested
            if parallel:
                stop = distributed.any_rank(stop, device)
            if stop:
                save(epoch, step, optimizer.state_dict(), history)
                raise Cancelled()
            step_seed = derive_seed(seed, phase.name, epoch, step)
            torch.manual_seed(step_seed)  # dropout and any other global-RNG use
            generator = torch.Generator().manual_seed(step_seed)
            index = order[step * phase.batch_size : (step + 1) * phase.batch_size]
            images = phase.data.images[index]
            if crop or flip:
                images = augment_batch(images, generator, crop, flip)
            x = to_float_nchw(images)
            y = phase.data.labels[index]
            processed += x.shape[0]
            if parallel:
                mine = distributed.shard(x)
                x, y = x[mine], y[mine]
            with autocast_for(phase.data.device, ctx.amp_dtype):
                loss, terms = loss_fn(x, y, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in terms.items():
                total = on_device.get(key)
                value = value.detach().to(torch.float64) if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)
                on_device[key] = value if total is None else total + value
            if (step + 1) % report_every == 0 or step + 1 == steps:
                elapsed = train_seconds + time.perf_counter() - epoch_start
                ctx.emitter.progress(
                    stage=phase.name, epoch=epoch, epochs=phase.epochs, step=step + 1, steps=steps, lr=lr,
                    loss={k: float(v) / (step + 1 - first_step) for k, v in on_device.items()},
                    imagesPerSecond=round(processed / max(elapsed, 1e-9), 1),
                )
        train_seconds += time.perf_counter() - epoch_start
        sums = {k: float(v) for k, v in on_device.items()}
        if parallel:
            sums = distributed.mean_over_ranks(sums, device)
        if last_epoch and phase.model is not None:
            recalibrate_batchnorm(phase, ctx.amp_dtype)
        record = {"epoch": epoch, "lr": lr, **{f"train.{k}": v / max(steps - first_step, 1) for k, v in sums.items()}}
        if phase.on_epoch_end is not None:
            record.update(phase.on_epoch_end(epoch))
        for name, value in record.items():
            if name not in ("epoch", "lr"):
                ctx.emitter.metric(name, value, stage=phase.name, epoch=epoch)
        history.append(record)
        save(epoch + 1, 0, optimizer.state_dict(), history)
    return {"history": history, "seconds": train_seconds, "imagesPerSecond": processed / max(train_seconds, 1e-9)}


RECALIBRATION_IMAGES = 4096


@torch.no_grad()
def recalibrate_batchnorm(phase: Phase, amp_dtype=None) -> int:
    """Replace the running statistics of the BatchNorm layers this phase trains (those in train
    mode under `set_modes`) by their exact average over the first training images.

    Running statistics are an exponential average that lags the weights; after a short run
    (a few hundred steps) eval-mode accuracy can sit far below train-mode accuracy (Fashion-MNIST,
    WRN-16-1, one epoch: 12 % vs 71 %). Layers a phase keeps frozen (T&R's stem in stage 2) are
    in eval mode and untouched. Returns the number of layers recalibrated.
    """
    model = phase.model
    phase.set_modes()
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    if not layers:
        return 0
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    n = min(len(phase.data), RECALIBRATION_IMAGES)
    for start in range(0, n, phase.batch_size):
        x = to_float_nchw(phase.data.images[start : min(start + phase.batch_size, n)])
        with autocast_for(phase.data.device, amp_dtype):
            model(x)
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    return len(layers)
