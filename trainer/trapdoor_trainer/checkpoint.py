"""Checkpoints: everything needed to continue a run exactly where it stopped.

Their content is PhaseRunner's (phases.py). Format 2 records the finished phases' results under
"phases"; format 1 files (each method's own keys for them) are not read, so a job interrupted
under a format-1 trainer starts again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 2


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a kill mid-write never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"formatVersion": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu")
    if not isinstance(state, dict) or state.get("formatVersion") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a trapdoor checkpoint of format {FORMAT_VERSION}")
    return state
