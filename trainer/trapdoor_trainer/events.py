"""The trainer's stdout protocol: one JSON object per line, its kind in `type`.

Kinds: progress, metric, checkpoint, artifact, log, result, exit (rank 0 under torchrun). The TypeScript side mirrors these
shapes in src/worker/trainer-protocol.ts; keep both in step.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Optional, TextIO


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: report them as null rather than emitting invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Emitter:
    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stdout

    def emit(self, event_type: str, **fields: Any) -> None:
        record = {"type": event_type, "time": round(time.time(), 3), **fields}
        self.stream.write(json.dumps(_clean(record), separators=(",", ":")) + "\n")
        self.stream.flush()

    def progress(self, *, stage: str, epoch: int, epochs: int, step: int, steps: int, **fields: Any) -> None:
        fraction = (epoch + step / max(steps, 1)) / max(epochs, 1)
        self.emit("progress", stage=stage, epoch=epoch, epochs=epochs, step=step, steps=steps, fraction=round(fraction, 5), **fields)

    def metric(self, name: str, value: float, *, stage: str, epoch: Optional[int] = None) -> None:
        self.emit("metric", name=name, value=value, stage=stage, epoch=epoch)

    def checkpoint(self, path: str, *, stage: str, epoch: int, step: int) -> None:
        self.emit("checkpoint", path=path, stage=stage, epoch=epoch, step=step)

    def artifact(self, record: dict) -> None:
        self.emit("artifact", **record)

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    def result(self, **fields: Any) -> None:
        self.emit("result", **fields)
