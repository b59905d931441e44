"""Several processes for one job: the trainer started by `torchrun --nproc_per_node N` (the
worker does so for `resources.gpus: N`), one process per GPU (NCCL) or per group of cores
(gloo), with PyTorch's DistributedDataParallel.

How a job runs on N processes:
- Every rank runs the whole method, with the same data and seeds. The gradient loops
  (`train_phase`: T&R's stages, no-defense, the baselines' training) are data-parallel: every
  rank draws and augments the same global batch, keeps its 1/N share, and DDP averages the
  gradients, so a step is the single-process step over the global batch (up to summation order
  and BatchNorm's per-shard batch statistics). The learning rate and batch size need no scaling.
- Everything else (isolation, pruning, scoring, evaluation) runs on every rank, as one process
  would run it; a `Step`'s result is rank 0's, and after each loop phase every rank takes rank
  0's weights, so the ranks cannot drift apart.
- Rank 0 alone reports (events on stdout), writes checkpoints and artifacts; the others write
  into a directory of their own and say nothing. A checkpoint holds the same state as a
  single-process one (positions count global batches), so a job resumes on any N.
- Cancelling is agreed on: the ranks check the SIGTERM flag together at every step, so they
  stop at the same step and rank 0's checkpoint is consistent.
- torchrun reports a failed rank with its own exit code, so rank 0 also states the trainer's exit
  code as an `exit` event, which the worker reads in place of the process's.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def init(device: torch.device) -> None:
    """Join the process group torchrun set up (no-op for a single process)."""
    if world_size() <= 1 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def shutdown() -> None:
    """Leave the process group. Never raises: it runs while the job is ending (a peer that already
    exited can make gloo complain), and the job's outcome, cancelled or failed, must stand."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as e:  # noqa: BLE001 - see the docstring
            print(f"leaving the process group: {e}", file=sys.stderr)


def shard(batch: torch.Tensor) -> slice:
    """This rank's share of a global batch (contiguous; sizes differ by at most one)."""
    n, parts, me = batch.shape[0], dist.get_world_size(), dist.get_rank()
    base, extra = divmod(n, parts)
    start = me * base + min(me, extra)
    return slice(start, start + base + (1 if me < extra else 0))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any."""
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each named number across ranks (train losses for the epoch's record)."""
    if not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist()))


def from_main(value: Any) -> Any:
    """Rank 0's value on every rank (any picklable object)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_from_main(objects: dict[str, Any]) -> None:
    """Every rank takes rank 0's weights and buffers of the modules among `objects`."""
    for obj in objects.values():
        if isinstance(obj, torch.nn.Module):
            for tensor in obj.state_dict().values():
                dist.broadcast(tensor, src=0)


class _LossModule(torch.nn.Module):
    """A phase's trainable parameters and loss, as the module DDP wraps: DDP hooks the
    parameters' gradients wherever the forward uses them."""

    def __init__(self, parameters: list, loss_fn: Callable):
        super().__init__()
        self.trained = torch.nn.ParameterList([p for p in parameters if p.requires_grad])
        self.loss_fn = loss_fn

    def forward(self, x, y, generator):
        return self.loss_fn(x, y, generator)


def data_parallel_loss(parameters: list, loss_fn: Callable, device: torch.device) -> Callable:
    """`loss_fn` whose backward averages the gradients of `parameters` across ranks."""
    return torch.nn.parallel.DistributedDataParallel(
        _LossModule(parameters, loss_fn),
        device_ids=[device] if device.type == "cuda" else None,
        # Every method's loss uses all of its phase's trainable parameters on every step (all eight
        # were run on 2 processes); searching for unused ones would walk the graph each step. A
        # method whose loss skips some would have to turn this on.
        find_unused_parameters=False,
        broadcast_buffers=False,
    )


def cpu_threads_per_rank(cores: int) -> int:
    """The cores this process may use, shared among the ranks on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // max(local, 1))
