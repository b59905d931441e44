"""Stage-1 training throughput of the trainer's loop vs a reference loop, and model FLOPs utilisation.

Ours: the trainer's own loop (`train_phase`) with T&R's stage-1 loss on device-resident uint8 data,
batched crop/flip, channels-last (bf16 autocast on CUDA).
Reference: the loop as the official T&R code writes it: a torch Dataset with per-sample
transforms (pad + random crop + flip + to-tensor), a DataLoader, NCHW, fp32.
Peak: the best of several square fp32 GEMMs on the same device and thread count.

    python bench/throughput/run.py [--device cpu|cuda] [--steps 12]
"""

from __future__ import annotations

import argparse
import io
import os
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import replace_section  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trapdoor_trainer.context import RunContext  # noqa: E402
from trapdoor_trainer.data import DeviceData  # noqa: E402
from trapdoor_trainer.defenses.tnr import stage1_loss  # noqa: E402
from trapdoor_trainer.events import Emitter  # noqa: E402
from trapdoor_trainer.metrics import total_variation  # noqa: E402
from trapdoor_trainer.models import create_model  # noqa: E402
from trapdoor_trainer.runner import configure_cpu_threads, pick_amp_dtype  # noqa: E402
from trapdoor_trainer.training import LoopStart, Phase, train_phase  # noqa: E402

BATCH = 256


def forward_flops(model, shape) -> float:
    """2 x multiply-accumulates of conv, transposed conv and linear layers for one image (stage-1 forward)."""
    total = 0.0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2.0 * k * output.numel()
        elif isinstance(module, torch.nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            total += 2.0 * k * inputs[0].numel()
        elif isinstance(module, torch.nn.Linear):
            total += 2.0 * module.in_features * module.out_features * output.shape[0]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    with torch.no_grad():
        model.forward_with_reconstruction(torch.rand(1, *shape))
    for h in handles:
        h.remove()
    return total


def best_rate(device: torch.device, flops: float, fn, repeats: int = 5) -> float:
    best = 0.0
    for _ in range(repeats + 1):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = max(best, flops / (time.perf_counter() - t))
    return best


def gemm_peak(device: torch.device, n: int = 2048) -> dict:
    """fp32 GEMM rate through BLAS (matmul) and through the convolution library (a 1x1 conv is a
    GEMM; on CPU that is oneDNN, which the model's convolutions use). The peak is the better one."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    matmul = best_rate(device, 2 * n**3, lambda: a @ b)
    conv = torch.nn.Conv2d(512, 512, 1, bias=False).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(64, 512, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv1x1 = best_rate(device, 2 * 64 * 32 * 32 * 512 * 512, lambda: conv(x))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rates = {"matmul": matmul, "conv1x1": conv1x1, "peak": max(matmul, conv1x1)}
    if device.type == "cuda":  # the step runs under bf16 autocast there: its MFU is also against this
        a16, b16 = a.bfloat16(), b.bfloat16()
        rates["bf16Peak"] = best_rate(device, 2 * n**3, lambda: a16 @ b16)
    return rates


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _NullContext:
    """Enough of RunContext for train_phase: spec seed, no cancellation, a silent emitter."""

    class _Spec:
        seed = 0

    class _Cancel:
        requested = False

    def __init__(self, device):
        self.spec = self._Spec()
        self.cancel = self._Cancel()
        self.emitter = Emitter(io.StringIO())
        self.amp_dtype = pick_amp_dtype(device)


def ours(shape, images, labels, device, steps, batch: int = BATCH) -> float:
    c, h, w = shape
    torch.manual_seed(0)
    model = create_model("wrn16-1", c, 10, (h, w)).to(device).to(memory_format=torch.channels_last)
    data = DeviceData(images[: steps * batch], labels[: steps * batch], device)
    ctx = _NullContext(device)
    best = 0.0
    for _ in range(2):  # the first pass warms up kernels and allocator
        phase = Phase(name="stage1", epochs=1, batch_size=batch, lr=1e-3, weight_decay=5e-4, data=data, parameters=list(model.parameters()),
                      loss_fn=stage1_loss(model, 10.0, 0.1), set_modes=model.train, saves={}, augment="crop-flip")
        result = train_phase(ctx, phase, LoopStart(), save=lambda *position: None)  # no checkpoints
        best = max(best, result["imagesPerSecond"])
    return best


class ReferenceDataset(torch.utils.data.Dataset):
    """Per-sample transforms as in the official code: pad 4 + random crop, flip, to float tensor."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div(255)
        pad = 4
        x = F.pad(x, (pad, pad, pad, pad))
        top, left = np.random.randint(0, 2 * pad + 1, 2)
        x = x[:, top : top + self.images.shape[1], left : left + self.images.shape[2]]
        if np.random.rand() < 0.5:
            x = x.flip(2)
        return x, int(self.labels[i])


def reference(shape, images, labels, device, steps) -> float:
    c, h, w = shape
    torch.manual_seed(0)
    model = create_model("wrn16-1", c, 10, (h, w)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(ReferenceDataset(images[: steps * BATCH], labels[: steps * BATCH]), batch_size=BATCH, shuffle=True, drop_last=True)
    best = 0.0
    for _ in range(2):
        model.train()
        sync(device)
        t = time.perf_counter()
        count = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits, recon = model.forward_with_reconstruction(x)
            loss = F.cross_entropy(logits, y) + 10 * F.mse_loss(recon, x) + 0.1 * total_variation(recon)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            count += x.shape[0]
        sync(device)
        best = max(best, count / (time.perf_counter() - t))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=8, help="batches of 256 per timed epoch")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--batch", type=int, default=BATCH, help="ours' batch size (the reference keeps 256)")
    parser.add_argument("--no-reference", action="store_true", help="time ours only")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = configure_cpu_threads()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    gemm = gemm_peak(device)
    peak = gemm["peak"]
    rows = []
    for shape in ((3, 32, 32), (1, 28, 28)):
        c, h, w = shape
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (args.steps * max(BATCH, args.batch), h, w, c), dtype=np.uint8)
        labels = rng.integers(0, 10, args.steps * max(BATCH, args.batch))
        flops = 3 * forward_flops(create_model("wrn16-1", c, 10, (h, w)), shape)  # forward + backward ~ 3x forward
        ours_ips = ours(shape, images, labels, device, args.steps, args.batch)
        ref_ips = float("nan") if args.no_reference else reference(shape, images, labels, device, args.steps)
        rows.append({"shape": f"{h}x{w}x{c}", "ours": ours_ips, "reference": ref_ips, "speedup": ours_ips / ref_ips,
                     "trainGflopPerImage": flops / 1e9, "mfu": ours_ips * flops / peak,
                     **({"mfuBf16": ours_ips * flops / gemm["bf16Peak"]} if "bf16Peak" in gemm else {}),
                     "batch": args.batch, "compile": os.environ.get("TRAPDOOR_COMPILE") or None})
        print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} x{threads} threads"
    lines = [
        f"### Stage-1 throughput, {name} (torch {torch.__version__}, {time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python bench/throughput/run.py --device {device.type} --steps {args.steps}`. WRN-16-1 + decoder, batch {BATCH}, T&R stage-1 loss.",
        f"fp32 GEMM peak measured in the same run: {peak / 1e9:.0f} GFLOP/s (BLAS matmul {gemm['matmul'] / 1e9:.0f}, 1x1 convolution {gemm['conv1x1'] / 1e9:.0f}).{' Ours runs bf16 autocast on CUDA, so its MFU is against the fp32 (TF32 off) peak.' if device.type == 'cuda' else ''}",
        "",
        "| input | ours img/s | reference img/s | ours / reference | train GFLOP/img | MFU |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['ours']:.0f} | {r['reference']:.0f} | {r['speedup']:.2f}x | {r['trainGflopPerImage']:.3f} | {100 * r['mfu']:.0f} % |")
    table = "\n".join(lines)
    print(table)
    if args.json_out:
        args.json_out.write_text(json.dumps({"device": name, "gemm": gemm, "rows": rows}, indent=2))
    if not args.no_record:
        replace_section(f"throughput-{device.type}", table)


if __name__ == "__main__":
    main()
