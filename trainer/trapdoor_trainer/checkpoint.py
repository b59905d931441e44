"""Checkpoints: everything needed to continue a run exactly where it stopped.

Their content is PhaseRunner's (phases.py). Format 2 records the finished phases' results under
"phases"; format 1 files (each method's own keys for them) are not read: `load_checkpoint`
raises OutdatedCheckpoint and the job starts again from the beginning (a checkpoint is the
service's own file, so an upgrade mid-job costs time, never the job).
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


class OutdatedCheckpoint(Exception):
    """A checkpoint written by an earlier trainer in a format this one no longer reads."""


def load_checkpoint(path: str) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu")
    version = state.get("formatVersion") if isinstance(state, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and 0 < version < FORMAT_VERSION:
        raise OutdatedCheckpoint(f"{path} has checkpoint format {version}; this trainer reads format {FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} is not a trapdoor checkpoint of format {FORMAT_VERSION}")
    return state
