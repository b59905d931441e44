"""Model artifacts: safetensors weights, config/metadata JSON, ONNX graph, reconstruction previews.

The exported ONNX graph takes what the dataset holds: `input`, N x C x H x W float32 pixels in
[0,1] (pixels / 255, no mean/std normalisation) at the dataset's own H x W; any padding the
architecture needs happens inside the graph. It returns `logits`, N x classes.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from .data import sha256_file
from .models import SplitModel, create_model
from .png import image_grid, write_png
from .safetensors import load_file, save_file

PathLike = Union[str, "os.PathLike[str]"]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
ONNX_FILE = "model.onnx"

# 17 is the newest opset torch 1.13's exporter knows and is well supported by onnxruntime.
PREFERRED_OPSET = 17
MIN_OPSET = 13
# Previews: small images are upscaled by an integer factor to at least this many pixels a side.
PREVIEW_MIN_TILE = 64


@dataclass
class ArtifactRecord:
    kind: str
    format: str
    path: str  # relative to the work directory
    sha256: str
    size_bytes: int

    def to_event(self) -> dict:
        return {"kind": self.kind, "format": self.format, "path": self.path, "sha256": self.sha256, "sizeBytes": self.size_bytes}



def artifact_record(workdir: Path, name: str, kind: str, fmt: str) -> ArtifactRecord:
    path = workdir / name
    return ArtifactRecord(kind, fmt, name, sha256_file(path), path.stat().st_size)


def _onnx_opset() -> int:
    """PREFERRED_OPSET, capped by what the running torch's TorchScript exporter supports."""
    newest = None
    try:
        from torch.onnx import _constants

        # The name changed across torch versions; the TorchScript-specific one is the right cap.
        for attr in ("ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", "ONNX_MAX_OPSET"):
            newest = getattr(_constants, attr, None)
            if newest is not None:
                break
    except ImportError:
        pass
    opset = PREFERRED_OPSET if newest is None else min(PREFERRED_OPSET, int(newest))
    if opset < MIN_OPSET:
        raise RuntimeError(f"this torch exports ONNX opset {opset} at most; opset {MIN_OPSET}+ is required")
    return opset


def _float_dtype(model: nn.Module) -> torch.dtype:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def export_onnx(model: nn.Module, path: PathLike, image_shape: tuple[int, int, int]) -> None:
    """Export `model` (input `input` N x C x H x W in [0,1], output `logits`, dynamic batch).

    The graph is traced in eval mode, on CPU, in float32. The caller's model keeps its device,
    dtype and every submodule's training flag.
    """
    channels, height, width = image_shape
    if _device(model).type != "cpu" or _float_dtype(model) != torch.float32:
        # Export a CPU float32 copy rather than moving the live model: moving would swap the
        # storage under anything that holds its tensors (optimizer state, EMA copies).
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    training_flags = {module: module.training for module in model.modules()}
    export_kwargs: dict = {}
    # torch >= 2.5 has a dynamo exporter (default from 2.9) that needs onnxscript; use the TorchScript one.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        export_kwargs["dynamo"] = False
    # A private generator keeps the export from advancing the global RNG (training reproducibility).
    example = torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(0))
    try:
        model.eval()
        with warnings.catch_warnings():
            # torch 1.13 warns about prim::Constant shape inference and Slice folding; both harmless here.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            # torch >= 2.9 deprecates the TorchScript exporter we pick on purpose (no onnxscript needed).
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=_onnx_opset(),
                do_constant_folding=True,
                **export_kwargs,
            )
    finally:
        # Restore per module: a stem frozen in eval mode during T&R stage 2 must stay that way.
        for module, flag in training_flags.items():
            module.training = flag


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def export_model(
    model: SplitModel,
    workdir: PathLike,
    *,
    config: dict,
    metadata: dict,
    image_shape: tuple[int, int, int],
) -> list[ArtifactRecord]:
    """Write the final model's artifacts into `workdir` and describe them.

    `config` is what `load_exported_model` rebuilds from (architecture, inChannels, numClasses,
    height, width, stemEndBlock, faithfulWrn, optional norm, ...); `metadata` is free-form provenance.
    """
    if getattr(model, "decoder", None) is not None:
        raise ValueError("drop the decoder before exporting: it is a training aid, not part of the model")
    if "architecture" not in config:
        raise ValueError("config must name the architecture")
    image_size = getattr(model, "image_size", None)
    if image_size is not None and tuple(image_size) != tuple(image_shape[1:]):
        raise ValueError(f"image_shape {tuple(image_shape)} does not match the model's input size {tuple(image_size)}")
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, out / MODEL_FILE, metadata={"format": "pt", "architecture": str(config["architecture"])})
    _write_json(out / CONFIG_FILE, config)
    _write_json(out / METADATA_FILE, metadata)
    export_onnx(model, out / ONNX_FILE, image_shape)
    return [
        artifact_record(out, MODEL_FILE, "model", "safetensors"),
        artifact_record(out, CONFIG_FILE, "config", "json"),
        artifact_record(out, METADATA_FILE, "metadata", "json"),
        artifact_record(out, ONNX_FILE, "onnx", "onnx"),
    ]


def load_exported_model(workdir: PathLike) -> SplitModel:
    """Rebuild the exported model (eval mode, CPU) from config.json and model.safetensors."""
    root = Path(workdir)
    config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    model = create_model(
        config["architecture"],
        int(config["inChannels"]),
        int(config["numClasses"]),
        (int(config["height"]), int(config["width"])),
        stem_end_block=int(config.get("stemEndBlock", 5)),
        faithful_wrn=bool(config.get("faithfulWrn", True)),
        with_decoder=False,
        norm=str(config.get("norm", "batch")),
    )
    tensors = load_file(root / MODEL_FILE)
    expected = model.state_dict()
    # Weights uploaded in half precision are held in the model's own dtypes.
    model.load_state_dict({k: v.to(expected[k].dtype) if k in expected else v for k, v in tensors.items()}, strict=True)
    preprocessing = config.get("preprocessing")
    if preprocessing:
        model.set_input_normalization(preprocessing["mean"], preprocessing["std"])
    return model.eval()


def _to_uint8_tiles(images: torch.Tensor, n: int, scale: int) -> list[np.ndarray]:
    """First `n` of N x C x H x W floats in [0,1] -> H x W x C uint8 tiles, upscaled `scale` times."""
    pixels = (images[:n].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    tiles = pixels.permute(0, 2, 3, 1).numpy()
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    return list(tiles)


def write_reconstruction_preview(
    path: PathLike,
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    triggered: Optional[torch.Tensor] = None,
    triggered_reconstructions: Optional[torch.Tensor] = None,
    n: int = 8,
) -> None:
    """PNG grid in the style of T&R's Figure 4: originals over their reconstructions, then the
    triggered images over theirs when given. Inputs are N x C x H x W floats in [0,1]."""
    if originals.dim() != 4:
        raise ValueError(f"expected N x C x H x W images, got shape {tuple(originals.shape)}")
    height, width = originals.shape[2:]
    scale = max(1, math.ceil(PREVIEW_MIN_TILE / min(height, width)))
    rows = [originals, reconstructions]
    rows += [t for t in (triggered, triggered_reconstructions) if t is not None]
    for row in rows:
        if row.dim() != 4 or tuple(row.shape[1:]) != tuple(originals.shape[1:]):
            raise ValueError(f"all preview rows must share the shape C x H x W = {tuple(originals.shape[1:])}")
    write_png(path, image_grid([_to_uint8_tiles(row, n, scale) for row in rows]))
