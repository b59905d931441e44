"""The job spec (`spec.json`) the worker writes and the trainer reads, validated field by field.

Mirrors `RunSpec` in src/worker/trainer-protocol.ts. Any problem raises SpecError naming the
field (e.g. `hyperparameters.lambda1`), which the CLI turns into exit code 2. `hyperparameters`
and `attack.params` are validated against the JSON Schemas the catalog publishes (see
`schema_check`), the method, attack and architecture names against their registries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import SpecError

DEVICES = ("auto", "cpu", "cuda")
TOP_LEVEL = {"jobId", "method", "architecture", "data", "attack", "target", "hyperparameters", "seed", "device", "processes", "resumeFrom"}
DATA_KEYS = ("train", "holdout", "test", "asrTest", "initModel")


@dataclass(frozen=True)
class DataPaths:
    train: str
    holdout: str
    test: str
    asr_test: Optional[str] = None
    init_model: Optional[str] = None  # artifact directory of an earlier job (post-training defenses)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    target: int
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    method: str
    architecture: str
    data: DataPaths
    hyperparameters: dict
    seed: int
    device: str
    processes: int = 1
    attack: Optional[AttackSpec] = None
    target: Optional[int] = None
    resume_from: Optional[str] = None
    job_id: Optional[str] = None

    def to_json(self) -> dict:
        return {
            "jobId": self.job_id,
            "method": self.method,
            "architecture": self.architecture,
            "data": {"train": self.data.train, "holdout": self.data.holdout, "test": self.data.test, "asrTest": self.data.asr_test, "initModel": self.data.init_model},
            "attack": None if self.attack is None else {"name": self.attack.name, "target": self.attack.target, "params": self.attack.params},
            "target": self.target,
            "hyperparameters": self.hyperparameters,
            "seed": self.seed,
            "device": self.device,
            "processes": self.processes,
            "resumeFrom": self.resume_from,
        }


def _require_str(raw: Mapping, key: str, field_name: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(field_name, "is required and must be a non-empty string")
    return value


def _optional_int(value: Any, field_name: str, minimum: int = 0) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(field_name, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _parse_data(raw: Any) -> DataPaths:
    if not isinstance(raw, Mapping):
        raise SpecError("data", "is required and must be an object with train, holdout, test")
    for key in raw:
        if key not in DATA_KEYS:
            raise SpecError(f"data.{key}", f"unknown dataset role; known: {list(DATA_KEYS)}")
    asr = raw.get("asrTest")
    if asr is not None and (not isinstance(asr, str) or not asr):
        raise SpecError("data.asrTest", "must be a non-empty string path")
    init_model = raw.get("initModel")
    if init_model is not None and (not isinstance(init_model, str) or not Path(init_model).is_dir()):
        raise SpecError("data.initModel", f"must be the artifact directory of an earlier job, got {init_model!r}")
    return DataPaths(
        train=_require_str(raw, "train", "data.train"),
        holdout=_require_str(raw, "holdout", "data.holdout"),
        test=_require_str(raw, "test", "data.test"),
        asr_test=asr,
        init_model=init_model,
    )


def _parse_attack(raw: Any) -> Optional[AttackSpec]:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("attack", "must be an object {name, target, params?}")
    for key in raw:
        if key not in ("name", "target", "params"):
            raise SpecError(f"attack.{key}", "unknown field; known: name, target, params")
    from .attacks import resolve_params  # late import: attacks pull in torch models

    name = _require_str(raw, "name", "attack.name")
    target = _optional_int(raw.get("target", 0), "attack.target")
    return AttackSpec(name=name, target=target, params=resolve_params(name, raw.get("params")))


def parse_spec(raw: Any) -> RunSpec:
    """Validate a decoded spec.json and resolve every default."""
    from .defenses.registry import get_method
    from .models import ARCHITECTURES

    if not isinstance(raw, Mapping):
        raise SpecError("spec", "must be a JSON object")
    for key in raw:
        if key not in TOP_LEVEL:
            raise SpecError(key, f"unknown field; known: {sorted(TOP_LEVEL)}")
    method_name = _require_str(raw, "method", "method")
    method = get_method(method_name)
    architecture = ARCHITECTURES.get(raw.get("architecture", "wrn16-1")).name
    data = _parse_data(raw.get("data"))
    attack = _parse_attack(raw.get("attack"))
    target = _optional_int(raw.get("target"), "target")
    if data.asr_test is not None and target is None:
        raise SpecError("target", "is required when data.asrTest is given (the class the trigger sends images to)")
    if attack is not None and target is not None and attack.target != target:
        raise SpecError("target", f"disagrees with attack.target ({target} vs {attack.target})")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise SpecError("seed", f"must be an integer in [0, 2^31), got {seed!r}")
    device = raw.get("device", "auto")
    if device not in DEVICES:
        raise SpecError("device", f"must be one of {list(DEVICES)}, got {device!r}")
    processes = raw.get("processes", 1)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise SpecError("processes", f"must be a positive integer, got {processes!r}")
    started = int(os.environ.get("WORLD_SIZE", "1"))
    if processes != started:
        raise SpecError("processes", f"the spec asks for {processes} process(es) but {started} started; run it under torchrun --nproc_per_node {processes}")
    resume = raw.get("resumeFrom")
    if resume is not None:
        if not isinstance(resume, str) or not Path(resume).is_file():
            raise SpecError("resumeFrom", f"checkpoint {resume!r} does not exist")
    return RunSpec(
        method=method_name,
        architecture=architecture,
        data=data,
        hyperparameters=method.resolve(raw.get("hyperparameters")),
        seed=seed,
        device=device,
        processes=processes,
        attack=attack,
        target=target if target is not None else (attack.target if attack is not None else None),
        resume_from=resume,
        job_id=raw.get("jobId"),
    )


def load_spec(path: str) -> RunSpec:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError("spec", f"{path} does not exist") from None
    except json.JSONDecodeError as e:
        raise SpecError("spec", f"{path} is not valid JSON: {e}") from None
    return parse_spec(raw)
