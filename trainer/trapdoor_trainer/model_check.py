"""`check-model`: is an uploaded safetensors file a model of a catalog architecture?

check.json: {"file", "architecture", "inChannels", "height", "width", "numClasses", "dtype":
"F32"|"F16"|"BF16", "stemEndBlock"?, "faithfulWrn"?}. The file is read with the package's own
safetensors reader (no pickles, offsets checked), then held tensor by tensor against the model
the architecture builds for that input and class count: every name present and no other, every
shape equal, floating tensors in the declared dtype (integer buffers such as BatchNorm's
num_batches_tracked stay integers), every value finite, and the weights load. The first problems
found are reported together (SpecError on field `model`, exit code 2); on success one JSON line,
{"tensors", "parameters"}.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import SpecError
from .models import create_model
from .safetensors import load_file

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
MAX_REPORTED = 6


def check_model(spec: dict) -> dict:
    declared = DTYPES.get(spec.get("dtype"))
    if declared is None:
        raise SpecError("dtype", f"must be one of {sorted(DTYPES)}")
    try:
        tensors = load_file(spec["file"])
    except (OSError, ValueError) as e:
        raise SpecError("model", f"not a valid safetensors file: {e}") from None
    try:
        model = create_model(
            spec["architecture"], int(spec["inChannels"]), int(spec["numClasses"]), (int(spec["height"]), int(spec["width"])),
            stem_end_block=int(spec.get("stemEndBlock", 5)), faithful_wrn=bool(spec.get("faithfulWrn", True)), with_decoder=False,
        )
    except Exception as e:  # noqa: BLE001 - an architecture that cannot take this input says why
        raise SpecError("architecture", f"cannot build {spec.get('architecture')} for this input: {e}") from None
    expected = model.state_dict()
    problems = []
    for name in expected.keys() - tensors.keys():
        problems.append(f"missing tensor {name} {list(expected[name].shape)}")
    for name in tensors.keys() - expected.keys():
        problems.append(f"unexpected tensor {name} {list(tensors[name].shape)}")
    for name in sorted(expected.keys() & tensors.keys()):
        want, got = expected[name], tensors[name]
        if list(got.shape) != list(want.shape):
            problems.append(f"tensor {name} has shape {list(got.shape)}, the architecture needs {list(want.shape)}")
        elif want.is_floating_point() and got.dtype != declared:
            problems.append(f"tensor {name} is {str(got.dtype).removeprefix('torch.')}, declared {spec['dtype']}")
        elif not want.is_floating_point() and got.is_floating_point():
            problems.append(f"tensor {name} is floating point, the architecture keeps an integer there")
        elif got.is_floating_point() and not torch.isfinite(got.float()).all():
            problems.append(f"tensor {name} holds NaN or infinite values")
    if problems:
        shown = sorted(problems)[:MAX_REPORTED]
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise SpecError("model", "; ".join(shown) + more)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    return {"tensors": len(tensors), "parameters": int(sum(p.numel() for p in model.parameters()))}


def run_check_model(spec_path: str) -> dict:
    try:
        spec = json.loads(Path(spec_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError("spec", f"cannot read {spec_path}: {e}") from None
    return check_model(spec)
