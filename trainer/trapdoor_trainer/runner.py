"""One job from spec to artifacts: load and check data, build the ASR set, run the method,
export the model, report the result."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import __version__, distributed
from .checkpoint import OutdatedCheckpoint, load_checkpoint
from .context import JobData, RunContext
from .data import CanonicalDataset, load_canonical
from .defenses.registry import get_method
from .errors import SpecError
from .events import Emitter
from .spec import RunSpec


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise SpecError("device", "cuda was requested but no CUDA device is available")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", distributed.local_rank())  # one GPU per process under torchrun
    return torch.device(requested)


def configure_cpu_threads() -> int:
    """Use every core this process may run on (some OpenMP builds default to one thread);
    TRAPDOOR_THREADS overrides."""
    threads = int(os.environ.get("TRAPDOOR_THREADS", "0")) or distributed.cpu_threads_per_rank(len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    return threads


def pick_amp_dtype(device: torch.device) -> Optional[torch.dtype]:
    """bf16 autocast on GPUs that support it (no loss scaling needed); full fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _check_compatible(field: str, reference: CanonicalDataset, other: CanonicalDataset) -> None:
    if other.shape != reference.shape:
        raise SpecError(field, f"images are {other.shape} (HxWxC) but the training set's are {reference.shape}")
    if other.num_classes != reference.num_classes:
        raise SpecError(field, f"has {other.num_classes} classes but the training set has {reference.num_classes}")


def load_job_data(spec: RunSpec) -> JobData:
    train = load_canonical(spec.data.train, "data.train")
    holdout = load_canonical(spec.data.holdout, "data.holdout")
    test = load_canonical(spec.data.test, "data.test")
    _check_compatible("data.holdout", train, holdout)
    _check_compatible("data.test", train, test)
    if spec.target is not None and spec.target >= train.num_classes:
        raise SpecError("target", f"must be below the number of classes ({train.num_classes})")
    asr_images = None
    if spec.data.asr_test is not None:
        asr = load_canonical(spec.data.asr_test, "data.asrTest")
        _check_compatible("data.asrTest", train, asr)
        asr_images = asr.images[asr.labels != spec.target]  # ASR counts non-target images only
        if len(asr_images) == 0:
            raise SpecError("data.asrTest", "contains no images outside the target class")
    elif spec.attack is not None:
        asr_images = build_asr_images(spec, holdout, test)
    return JobData(train=train, holdout=holdout, test=test, asr_images=asr_images, target=spec.target)


def build_asr_images(spec: RunSpec, holdout: CanonicalDataset, test: CanonicalDataset) -> np.ndarray:
    from .attacks import build_trigger, make_asr_set

    attack = spec.attack
    if attack.name == "lba":
        raise SpecError("data.asrTest", "the LBA trigger is optimised per dataset and cannot be rebuilt; pass the ASR test set written by `poison --asr-out`")
    # Clean holdout images are the only clean training data a trigger builder may look at.
    trigger = build_trigger(attack.name, attack.params, test.shape, seed=spec.seed, train_images=holdout.images, train_labels=holdout.labels, target=attack.target)
    images, _ = make_asr_set(test.images, test.labels, trigger, attack.target)
    return images


def _software() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(), "trainer": __version__}


def _device_description(device: torch.device) -> dict:
    processes = {"processes": distributed.world_size()} if distributed.is_distributed() else {}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "memoryBytes": int(props.total_memory), **processes}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), **processes}


def run_job(spec: RunSpec, workdir: Path, emitter: Emitter, cancel=None) -> dict:
    from .export import artifact_record

    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    device = pick_device(spec.device)
    configure_cpu_threads()
    distributed.init(device)
    if not distributed.is_main():
        workdir = workdir / f"rank-{distributed.rank()}"  # nothing a rank > 0 writes is used
        workdir.mkdir(parents=True, exist_ok=True)
    data = load_job_data(spec)
    try:
        resume = load_checkpoint(spec.resume_from) if spec.resume_from else None
    except OutdatedCheckpoint as e:
        emitter.log(f"{e}: starting the job again from the beginning")
        resume = None
    except ValueError as e:
        raise SpecError("resumeFrom", str(e)) from None
    if resume is not None and (resume.get("method") != spec.method or resume.get("seed") != spec.seed):
        raise SpecError("resumeFrom", "checkpoint was written by a job with another method or seed")
    ctx = RunContext(spec=spec, workdir=workdir, device=device, emitter=emitter, data=data, resume_state=resume, amp_dtype=pick_amp_dtype(device))
    if cancel is not None:
        ctx.cancel = cancel
    device_info = _device_description(device)
    processes = f" x {distributed.world_size()} processes" if distributed.is_distributed() else ""
    emitter.log(f"{spec.method} on {device_info['name']} ({device.type}){processes}; train {len(data.train)}, holdout {len(data.holdout)}, test {len(data.test)} images")

    outcome = get_method(spec.method).run(ctx)
    if not distributed.is_main():
        return {}  # rank 0 exports and reports
    model = outcome["model"]
    if model is not None:
        _export(spec, ctx, data, outcome, device_info)
    for path in ctx.preview_paths:
        emitter.artifact(artifact_record(workdir, path.name, "preview", "png").to_event())
    for path in ctx.health_paths:
        emitter.artifact(artifact_record(workdir, path.name, "health", path.suffix.lstrip(".")).to_event())
    result = {
        **outcome["metrics"],
        "method": spec.method,
        "timings": {**outcome["timings"], "totalSeconds": time.perf_counter() - started},
        "imagesPerSecond": outcome["imagesPerSecond"],
        "device": device_info,
    }
    emitter.result(**result)
    return result


def _export(spec: RunSpec, ctx: RunContext, data: JobData, outcome: dict, device_info: dict) -> None:
    """The defended model's artifacts: weights, config, metadata, ONNX and the bundle."""
    from .export import artifact_record, export_model  # export pulls in ONNX machinery only when needed
    from .model_card import write_bundle

    model, workdir = outcome["model"], ctx.workdir
    c, h, w = data.image_shape
    config = {
        "architecture": spec.architecture,
        "inChannels": c,
        "numClasses": data.num_classes,
        "height": h,
        "width": w,
        "stemEndBlock": spec.hyperparameters.get("stemEndBlock", 5),
        "faithfulWrn": spec.hyperparameters.get("faithfulWrn", True),
        "classNames": data.train.class_names,
        "input": {"layout": "NCHW", "dtype": "float32", "range": [0, 1], "normalisation": "none"},
        **outcome.get("config", {}),  # architecture changes a method made, e.g. DP-SGD's {"norm": "group"}
    }
    if model.input_normalization is not None:  # a model its user brought, normalising inside
        config["preprocessing"] = model.input_normalization
        config["input"] = {**config["input"], "normalisation": "inside the model (preprocessing)"}
    metadata = {
        "jobId": spec.job_id,
        "method": spec.method,
        "spec": spec.to_json(),
        "hyperparameters": spec.hyperparameters,
        "resolved": outcome.get("resolved", {}),
        "datasets": {"train": data.train.sha256, "holdout": data.holdout.sha256, "test": data.test.sha256},
        "seed": spec.seed,
        "metrics": outcome["metrics"],
        "history": outcome["history"],
        "device": device_info,
        "software": _software(),
    }
    records = export_model(model.cpu().eval(), workdir, config=config, metadata=metadata, image_shape=data.image_shape)
    health_json = next((p for p in ctx.health_paths if p.suffix == ".json"), None)
    bundle = write_bundle(workdir, health_json)
    records.append(artifact_record(workdir, bundle.name, "bundle", "tar"))
    for record in records:
        ctx.emitter.artifact(record.to_event())
