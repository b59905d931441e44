"""Several processes for one job (distributed.py): the trainer under torchrun with 2 CPU
processes on gloo gives the single-process result within noise, speaks through rank 0 alone,
states its exit code, and a checkpoint it writes resumes on another process count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import FAST, TRAINER_ROOT, result_of, run, write_spec

TORCHRUN = [sys.executable, "-m", "trapdoor_trainer.torchrun", "--standalone", "--nproc_per_node=2", "-m", "trapdoor_trainer", "run"]


def with_processes(spec: Path, processes: int, **changes) -> Path:
    raw = json.loads(spec.read_text())
    raw.update(processes=processes, **changes)
    path = spec.with_name(f"{spec.stem}-{processes}p-{len(list(spec.parent.iterdir()))}.json")
    path.write_text(json.dumps(raw))
    return path


def start_parallel(spec: Path, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TRAPDOOR_THREADS": "1"}
    return subprocess.Popen([*TORCHRUN, "--spec", str(spec), "--workdir", str(workdir)], cwd=TRAINER_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_parallel(spec: Path, workdir: Path) -> tuple[int, list[dict], str]:
    proc = start_parallel(spec, workdir)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def exit_event(events: list[dict]) -> dict:
    exits = [e for e in events if e["type"] == "exit"]
    assert len(exits) == 1 and events[-1] is exits[0], "rank 0 states its exit code once, last"
    return exits[0]


def test_two_processes_learn_what_one_does(job_datasets, tmp_path):
    spec = write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 8, **FAST}, seed=2)
    code, events, err = run(spec, tmp_path / "one")
    assert code == 0, err
    single = result_of(events)
    code, events, err = run_parallel(with_processes(spec, 2), tmp_path / "two")
    assert code == 0, err
    assert exit_event(events)["code"] == 0
    parallel = result_of(events[:-1])
    # rank 0 alone reports: one result, every progress event once
    assert sum(e["type"] == "result" for e in events) == 1
    progress = [(e["epoch"], e["step"]) for e in events if e["type"] == "progress"]
    assert len(progress) == len(set(progress))
    assert parallel["device"]["processes"] == 2
    assert abs(parallel["ca"] - single["ca"]) <= 0.05, (parallel["ca"], single["ca"])
    assert parallel["asr"] >= 0.9 and single["asr"] >= 0.9
    assert not (tmp_path / "two" / "rank-1" / "model.safetensors").exists(), "rank 1 exports nothing"


def test_a_cancelled_parallel_run_resumes_on_one_process(job_datasets, tmp_path):
    spec = with_processes(write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 8, **FAST}, seed=5), 2)
    proc = start_parallel(spec, tmp_path / "interrupted")
    for line in proc.stdout:  # stop mid-way through the second epoch
        event = json.loads(line)
        if event["type"] == "progress" and event["epoch"] == 1:
            proc.send_signal(signal.SIGTERM)
            break
    rest = [json.loads(line) for line in proc.stdout.read().splitlines()]
    proc.wait(timeout=120)
    assert exit_event(rest)["code"] == 3, "torchrun's own exit code is replaced by rank 0's"
    checkpoint = tmp_path / "interrupted" / "checkpoints" / "latest.pt"
    assert checkpoint.exists()
    stopped_at = [e for e in rest if e["type"] == "checkpoint"][-1]
    assert stopped_at["epoch"] == 1 and stopped_at["step"] > 0

    resumed = with_processes(spec, 1, resumeFrom=str(checkpoint))
    code, events, err = run(resumed, tmp_path / "resumed")
    assert code == 0, err
    first = next(e for e in events if e["type"] == "progress")
    assert (first["epoch"], first["step"]) > (1, stopped_at["step"] - 1)  # continued, not restarted
    finished = result_of(events)
    assert finished["ca"] >= 0.9 and finished["asr"] >= 0.9, "as a run that was never interrupted"


def test_an_invalid_spec_is_stated_with_its_field(job_datasets, tmp_path):
    spec = with_processes(write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 1}), 2, seed=-1)
    code, events, err = run_parallel(spec, tmp_path / "w")
    assert code != 0
    stated = exit_event(events)
    assert stated["code"] == 2 and stated["error"]["field"] == "seed"


def test_a_spec_for_two_processes_refuses_to_run_as_one(job_datasets, tmp_path):
    spec = with_processes(write_spec(tmp_path, job_datasets, "NO_DEFENSE", {"epochs": 1}), 2)
    code, _, err = run(spec, tmp_path / "w")
    assert code == 2 and json.loads(err.strip().splitlines()[-1])["field"] == "processes"
