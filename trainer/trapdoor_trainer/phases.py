"""Running a method's phases: the one place that writes checkpoints, resumes and skips.

A method runs its phases, in order, through one `PhaseRunner`:

    runner = PhaseRunner(ctx)
    pretrain = runner.run(Phase(name="pretrain", ..., saves={"model": model}))
    pruning = runner.run(Step("prune", lambda: prune(ctx, model)))
    finetune = runner.run(Phase(name="finetune", ..., saves={"model": model}))

- A `Phase` (training.py) is a gradient loop; a `Step` is any other piece of work (pruning,
  scoring the training set, a threshold sweep): one call that returns a dict.
- `run` returns the phase's result, a dict: a loop's is {"history", "seconds", "imagesPerSecond"}
  and its `summary()`; a step's is what it returned. The runner keeps the results of the
  finished phases, and every checkpoint carries them (under "phases"), so they must pickle.
- Only loop phases write checkpoints: after every epoch, and on SIGTERM before stopping. One
  holds the position (stage = the phase's name, epoch, step), the optimizer, the phase's history,
  the finished phases' results, and `state_dict()` of each object in the phase's `saves`, under
  its key.
- Resuming (the job's `resumeFrom`): a phase the checkpoint lists as finished is not run again;
  `run` hands back its recorded result. The phase the checkpoint was written in loads its saves
  (`load_state_dict`), optimizer and history and continues at the saved epoch and step. Reaching
  any other phase first means the job's phases differ from the checkpoint's: an error.

So a method's code between phases (building a model, replacing a head, freezing layers, hooks)
runs on every attempt and must not depend on whether a phase ran or was skipped; the weights
come from the checkpoint when the resumed phase starts. A step polls no cancel flag and writes no
checkpoint: a SIGTERM during one stops the job at the next loop step, and what the step changed
reaches the next checkpoint through that loop phase's saves and the recorded result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

from . import distributed
from .context import RunContext
from .errors import SpecError
from .training import LoopStart, Phase, train_phase

# Checkpoint keys the runner writes itself (context.save_checkpoint adds method, seed and the
# position); a phase's saves may use any other.
RESERVED_KEYS = frozenset({"formatVersion", "method", "seed", "stage", "epoch", "step", "optimizer", "history", "phases"})


@dataclass
class Step:
    """A phase that is not a gradient loop: `run()` once, its dict result recorded."""

    name: str
    run: Callable[[], dict]


class PhaseRunner:
    """One job's phases, run in order; one runner per job attempt (see the module docstring)."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        checkpoint = ctx.resume_state
        self.results: dict[str, dict] = dict(checkpoint["phases"]) if checkpoint is not None else {}
        self._resume: Optional[dict] = checkpoint  # until the phase it was written in starts
        self._seen: set[str] = set()

    def run(self, phase: Union[Phase, Step]) -> dict:
        if phase.name in self._seen:
            raise ValueError(f"phase {phase.name!r} runs twice; every phase of a job needs its own name")
        self._seen.add(phase.name)
        if phase.name in self.results:  # finished in an earlier attempt
            return self.results[phase.name]
        if self._resume is not None and self._resume["stage"] != phase.name:
            raise SpecError(
                "resumeFrom", f"the checkpoint was written in phase {self._resume['stage']!r}, but this job reaches {phase.name!r} first without a record of it"
            )
        result = phase.run() if isinstance(phase, Step) else self._train(phase)
        if distributed.is_distributed():
            # every rank goes on from rank 0's result and weights (see distributed.py)
            result = distributed.from_main(result)
            if isinstance(phase, Phase):
                distributed.sync_from_main(phase.saves)
        self.results[phase.name] = result
        return result

    def _train(self, phase: Phase) -> dict:
        clashing = RESERVED_KEYS & set(phase.saves)
        if clashing:
            raise ValueError(f"phase {phase.name!r} saves under reserved checkpoint keys {sorted(clashing)}")
        start = LoopStart()
        if self._resume is not None:
            checkpoint, self._resume = self._resume, None
            for key, saved in phase.saves.items():
                saved.load_state_dict(checkpoint[key])
            start = LoopStart(checkpoint["epoch"], checkpoint["step"], checkpoint["optimizer"], list(checkpoint["history"]))

        def save(epoch: int, step: int, optimizer: dict, history: list) -> None:
            state = {key: saved.state_dict() for key, saved in phase.saves.items()}
            self.ctx.save_checkpoint({"optimizer": optimizer, "history": history, "phases": self.results, **state}, stage=phase.name, epoch=epoch, step=step)

        result = train_phase(self.ctx, phase, start, save)
        summary = phase.summary() if phase.summary is not None else {}
        return {**result, **summary}
