"""What a trapped head and a clean-trained head say about each training sample.

The trap learns the poisoned labels first (they come with an easy trigger); a head trained only on
the clean holdout never saw them. A dirty-label poisoned sample is one the trapped head fits and
the clean head rejects, so the gap between the two heads' log-probability of the sample's label
ranks training samples from most to least suspicious. Isolate-and-retrain drops the top of that
ranking; the health report lists it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..context import RunContext
from ..data import DeviceData, to_float_nchw
from ..metrics import autocast_for


@torch.no_grad()
def training_set_view(ctx: RunContext, model) -> dict:
    """Eval-mode predictions of `model` on every training sample (no augmentation):
    {"pred": int64 N, "labelLogProb": float32 N}, as CPU tensors (they go into checkpoints)."""
    data = ctx.device_data("train")
    batch = ctx.hp["evalBatchSize"]
    model.eval()
    preds, logps = [], []
    for start in range(0, len(data), batch):
        x = to_float_nchw(data.images[start : start + batch])
        with autocast_for(data.device, ctx.amp_dtype):
            logits = model(x)
        logp = F.log_softmax(logits.float(), dim=1)
        y = data.labels[start : start + batch]
        preds.append(logp.argmax(dim=1).cpu())
        logps.append(logp.gather(1, y[:, None])[:, 0].cpu())
    return {"pred": torch.cat(preds), "labelLogProb": torch.cat(logps)}


def suspicion_scores(trapped: dict, clean: dict) -> torch.Tensor:
    """log p_trapped(label) - log p_clean(label): large when the trap fits a label the clean head rejects."""
    return trapped["labelLogProb"] - clean["labelLogProb"]


def most_suspicious(scores: torch.Tensor, count: int) -> np.ndarray:
    """Indices of the `count` highest scores, highest first; ties go to the lower index."""
    order = torch.sort(-scores, stable=True).indices
    return order[:count].numpy()


def least_suspicious(scores: torch.Tensor, count: int) -> np.ndarray:
    """Indices of the `count` lowest scores, lowest first; ties go to the lower index."""
    return most_suspicious(-scores, count)


def isolation_quality(isolated: np.ndarray, poison_mask: Optional[np.ndarray]) -> dict:
    """Precision (isolated samples that are poisoned) and recall (poisoned samples isolated);
    None when the training set carries no poison mask."""
    if poison_mask is None:
        return {"isolationPrecision": None, "isolationRecall": None}
    hits = int(poison_mask[isolated].sum())
    poisoned = int(poison_mask.sum())
    return {
        "isolationPrecision": hits / len(isolated) if len(isolated) else None,
        "isolationRecall": hits / poisoned if poisoned else None,
    }


def subset_of_train(ctx: RunContext, kept: list) -> DeviceData:
    train = ctx.data.train
    index = np.asarray(kept, dtype=np.int64)
    return DeviceData(train.images[index], train.labels[index], ctx.device)
