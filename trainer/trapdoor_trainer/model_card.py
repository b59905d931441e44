"""The `bundle` artifact: one tar a platform can file as it is, in the Hugging Face model-card
layout. It holds the model as exported (model.safetensors, config.json, metadata.json, model.onnx)
and a README.md whose YAML front matter carries the metrics, the datasets by sha256, the method and
its hyper-parameters and the health verdict, and whose body says what the model is for and what
the defense does not guarantee.

Values in the front matter are written as JSON, which is YAML too (YAML 1.2 is a superset), so no
YAML library is needed to write it and any YAML or JSON reader takes each value back.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Optional

from .export import CONFIG_FILE, METADATA_FILE, MODEL_FILE, ONNX_FILE

BUNDLE_FILE = "bundle.tar"
CARD_FILE = "README.md"

METRIC_NAMES = {"ca": "clean_accuracy", "asr": "attack_success_rate", "mse": "reconstruction_mse"}

LIMITS = """\
- The defense was trained against the data it was given. It removes backdoors whose poisoned
  samples the training set holds; it says nothing about triggers it never saw, adversarial
  examples, or poisoning of the clean holdout set, which must be trusted.
- The attack success rate above is measured only on the trigger given with the job (or rebuilt
  from the named attack). A low figure does not prove that no other trigger works.
- The health verdict is a statistical signal from the training run, with false positives and
  false negatives; the samples it flags are candidates for review, not proof of poisoning.
- Clean accuracy is measured on the test set given with the job; accuracy on other data may
  differ.
"""


def calibration_lines(calibration: Optional[dict]) -> list[str]:
    """The verdict's measured error rates, in words (none where the report carries no calibration)."""
    if not calibration:
        return []
    out = calibration["outOfSample"]

    def share(rate: dict) -> str:
        return f"{rate['count']} of {rate['of']}"

    return [
        f"- how far the verdict can be trusted (measured on {calibration['dataset']}, runs its thresholds were not chosen on): "
        f"clean sets called poisoned {share(out['falsePositiveRate'])}, poisoned sets not called poisoned {share(out['falseNegativeRate'])}"
        f" ({share(calibration['outOfSampleAtLeast5Percent']['falseNegativeRate'])} with poison at 5 % of the training set or more), "
        f"likely target right {share(out['likelyTargetAccuracy'])}; {calibration['source']}"
    ]


def _yaml_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def model_card(metadata: dict, config: dict, health: Optional[dict]) -> str:
    """README.md: front matter (JSON values, one key a line) and a short body."""
    metrics = metadata.get("metrics", {})
    front = {
        "library_name": "pytorch",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "backdoor-defense", "trapdoor", str(metadata.get("method", "")).lower()],
        "metrics": [{"name": METRIC_NAMES[k], "value": metrics[k]} for k in ("ca", "asr", "mse") if metrics.get(k) is not None],
        "datasets": [{"role": role, "sha256": files} for role, files in sorted(metadata.get("datasets", {}).items())],
        "trapdoor": {
            "job_id": metadata.get("jobId"),
            "method": metadata.get("method"),
            "architecture": config.get("architecture"),
            "seed": metadata.get("seed"),
            "hyperparameters": metadata.get("hyperparameters", {}),
            "health_verdict": None if health is None else health.get("verdict"),
            "likely_target": None if health is None else health.get("likelyTarget"),
        },
    }
    lines = ["---", *(f"{key}: {_yaml_value(value)}" for key, value in front.items()), "---", ""]
    c, h, w = config.get("inChannels"), config.get("height"), config.get("width")
    ca, asr = metrics.get("ca"), metrics.get("asr")
    evaluation = [f"- clean accuracy: {100 * ca:.2f} %" if ca is not None else "- clean accuracy: not measured"]
    evaluation.append(f"- attack success rate: {100 * asr:.2f} %" if asr is not None else "- attack success rate: no trigger was given, not measured")
    if health is not None:
        evaluation.append(f"- health verdict of the training set: {health.get('verdict')}" + (f" (likely target class {health['likelyTarget']})" if health.get("likelyTarget") is not None else ""))
        evaluation += calibration_lines(health.get("calibration"))
    lines += [
        f"# {metadata.get('method')} {config.get('architecture')} classifier (trapdoor job {metadata.get('jobId')})",
        "",
        "## Intended use",
        "",
        f"Image classification into {config.get('numClasses')} classes ({', '.join(map(str, config.get('classNames') or [])) or 'unnamed'}),",
        "as the training set defines them, with the backdoor the training data may have carried",
        f"removed by {metadata.get('method')}.",
        "",
        "## Input and files",
        "",
        f"- Input: N x {c} x {h} x {w} float32, pixels / 255 in [0, 1], no mean/std normalisation.",
        f"- `{ONNX_FILE}`: input `input`, output `logits` (N x classes).",
        f"- `{MODEL_FILE}`: the weights; `{CONFIG_FILE}` names the architecture to rebuild it.",
        f"- `{METADATA_FILE}`: the whole run (spec, metrics, per-epoch history, device, software).",
        "",
        "## Evaluation",
        "",
        *evaluation,
        "",
        "## Limits: what the defense does not guarantee",
        "",
        LIMITS,
    ]
    return "\n".join(lines)


def write_bundle(workdir: Path, health_path: Optional[Path] = None) -> Path:
    """bundle.tar in `workdir` from the exported files there (and health.json when given)."""
    config = json.loads((workdir / CONFIG_FILE).read_text())
    metadata = json.loads((workdir / METADATA_FILE).read_text())
    health = json.loads(health_path.read_text()) if health_path is not None and health_path.exists() else None
    card = model_card(metadata, config, health).encode()
    path = workdir / BUNDLE_FILE
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in (MODEL_FILE, CONFIG_FILE, METADATA_FILE, ONNX_FILE):
            tar.add(workdir / name, arcname=name, recursive=False, filter=_plain)
        info = _plain(tarfile.TarInfo(CARD_FILE))
        info.size = len(card)
        tar.addfile(info, io.BytesIO(card))
    return path


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Reproducible members: no owner, no time, ordinary permissions."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o644
    return info
