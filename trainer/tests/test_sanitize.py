"""`sanitize`: a training set without the samples a policy over the health scores removes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from test_cli import TRAINER_ROOT
from trapdoor_trainer.data import load_canonical
from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.sanitize_command import parse_policy, removed_samples, run_sanitize

from synthetic import write_job_datasets


def sanitize(tmp_path, source: str, scores: np.ndarray, policy) -> subprocess.CompletedProcess:
    np.save(tmp_path / "scores.npy", scores.astype("<f4"))
    (tmp_path / "sanitize.json").write_text(json.dumps({"source": source, "scores": str(tmp_path / "scores.npy"), "policy": policy}))
    return subprocess.run([sys.executable, "-m", "trapdoor_trainer", "sanitize", "--spec", str(tmp_path / "sanitize.json"), "--out", str(tmp_path / "out")],
                          cwd=TRAINER_ROOT, capture_output=True, text=True, timeout=120)


def test_each_policy_removes_what_it_names():
    scores = np.array([0.5, 3.0, 3.0, -1.0, 2.0], dtype=np.float64)
    assert list(removed_samples(scores, ("dropTopFraction", 0.4))) == [1, 2]
    assert list(removed_samples(scores, ("dropTopFraction", 0.2))) == [1]  # a tie goes to the lower index
    assert list(removed_samples(scores, ("minScore", 2.0))) == [1, 2, 4]
    assert list(removed_samples(scores, ("indices", [4, 0]))) == [0, 4]
    for bad in ([5], [-1], [1, 1]):
        with pytest.raises(SpecError):
            removed_samples(scores, ("indices", bad))


@pytest.mark.parametrize("policy", [{}, {"dropTopFraction": 0.1, "minScore": 1.0}, {"dropTopFraction": 1.0}, {"dropTopFraction": 0},
                                    {"minScore": float("inf")}, {"indices": []}, {"indices": [1.5]}, {"other": 1}])
def test_a_policy_names_exactly_one_valid_rule(policy):
    with pytest.raises(SpecError):
        parse_policy(policy)


def test_the_sanitized_set_keeps_order_classes_and_the_poison_mask(tmp_path):
    data = write_job_datasets(tmp_path / "data", n_train=300, ratio=0.2)
    source = load_canonical(data["train"])
    scores = source.poison_mask.astype(np.float64) * 5 + np.linspace(0, 1, len(source))  # every poison above every clean sample
    done = sanitize(tmp_path, data["train"], scores, {"minScore": 5.0})
    assert done.returncode == 0, done.stderr
    out = load_canonical(tmp_path / "out")
    keep = ~source.poison_mask
    assert np.array_equal(out.images, source.images[keep]) and np.array_equal(out.labels, source.labels[keep])
    assert out.num_classes == source.num_classes and not out.poison_mask.any()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["sanitized"] == {"policy": {"minScore": 5.0}, "removedCount": 60, "kept": 240, "removedPoisoned": 60}


def test_refusals_name_the_field(tmp_path):
    data = write_job_datasets(tmp_path / "data", n_train=50, ratio=0.2)
    cases = [({"minScore": 99.0}, np.zeros(50), "policy"), ({"dropTopFraction": 0.5}, np.zeros(49), "scores"), ({"indices": [50]}, np.zeros(50), "policy.indices")]
    for policy, scores, field in cases:
        np.save(tmp_path / "scores.npy", scores.astype("<f4"))
        (tmp_path / "spec.json").write_text(json.dumps({"source": data["train"], "scores": str(tmp_path / "scores.npy"), "policy": policy}))
        with pytest.raises(SpecError) as refused:
            run_sanitize(str(tmp_path / "spec.json"), tmp_path / "out")
        assert refused.value.field == field
    # Through the command line, a refusal is exit code 2 with the field in the JSON on stderr.
    done = sanitize(tmp_path, data["train"], np.zeros(50), {"minScore": 99.0})
    assert done.returncode == 2 and json.loads(done.stderr.strip().splitlines()[-1])["field"] == "policy"
