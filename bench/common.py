"""Helpers shared by the benchmark scripts: paths, the trainer CLI, RESULTS.md sections."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINER = REPO / "trainer"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
sys.path.insert(0, str(TRAINER))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the trainer's CLI does; see trapdoor_trainer/__main__.py


def load_bench_module(relative: str):
    """Import bench/<relative> under a unique name (several benches have a run.py)."""
    import importlib.util

    path = REPO / "bench" / relative
    spec = importlib.util.spec_from_file_location("bench_" + relative.replace("/", "_").removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trainer(*args: str, stream_to=None) -> list[dict]:
    """Run `python -m trapdoor_trainer ARGS`, returning its JSON-line events; raises on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(TRAINER)}
    proc = subprocess.Popen([sys.executable, "-m", "trapdoor_trainer", *args], cwd=TRAINER, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = []
    for line in proc.stdout:
        event = json.loads(line)
        events.append(event)
        if stream_to is not None:
            stream_to(event)
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"trainer {' '.join(args)} exited {proc.returncode}: {err[-2000:]}")
    return events


def replace_section(name: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replace (or append) the block between `<!-- name:start -->` and `<!-- name:end -->`."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
