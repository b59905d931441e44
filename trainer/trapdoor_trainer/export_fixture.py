"""Export a randomly initialised model plus reference logits, for cross-runtime checks.

`python -m trapdoor_trainer.export_fixture OUTDIR --architecture small-cnn --channels 1
--height 28 --width 28 --classes 10 --seed 0` writes export_model's artifacts into OUTDIR and
`OUTDIR/fixture.json` = {"input": [...], "shape": [3, C, H, W], "logits": [...]} (flat,
row-major). The TypeScript tests run model.onnx in onnxruntime and compare with `logits`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from .export import export_model
from .models import ARCHITECTURES, SplitModel, create_model

FIXTURE_BATCH = 3


def _give_batchnorm_real_statistics(model: SplitModel, channels: int, height: int, width: int) -> None:
    """Make every BN layer matter, so a graph that skipped or misread one would be caught.

    One train-mode pass with momentum=None (cumulative average) sets the running stats to the
    batch's own: the architectures' small momenta would otherwise leave them near 0 / 1.
    """
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        model(torch.rand(16, channels, height, width))
    for bn, momentum in zip(batchnorms, momenta):
        bn.momentum = momentum


def build_fixture(outdir: Path, architecture: str, channels: int, height: int, width: int, classes: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = create_model(architecture, channels, classes, (height, width), with_decoder=True)
    model.drop_decoder()
    _give_batchnorm_real_statistics(model, channels, height, width)
    model.eval()

    inputs = torch.rand(FIXTURE_BATCH, channels, height, width)
    with torch.no_grad():
        logits = model(inputs)

    config = {
        "architecture": architecture,
        "inChannels": channels,
        "numClasses": classes,
        "height": height,
        "width": width,
        "stemEndBlock": 5,
        "faithfulWrn": True,
        "normalisation": "none",
    }
    metadata = {"method": "fixture", "seed": seed, "torchVersion": torch.__version__}
    records = export_model(model, outdir, config=config, metadata=metadata, image_shape=(channels, height, width))
    fixture = {"input": inputs.flatten().tolist(), "shape": list(inputs.shape), "logits": logits.flatten().tolist()}
    (outdir / "fixture.json").write_text(json.dumps(fixture), encoding="utf-8")
    return {"artifacts": [r.to_event() for r in records]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trapdoor_trainer.export_fixture", description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--architecture", default="small-cnn", choices=sorted(ARCHITECTURES))
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--height", type=int, default=28)
    parser.add_argument("--width", type=int, default=28)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = build_fixture(args.outdir, args.architecture, args.channels, args.height, args.width, args.classes, args.seed)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
