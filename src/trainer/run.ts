/**
 * One `python -m trapdoor_trainer run` process: start it on a spec, hand each stdout event to the
 * caller as it arrives, and resolve with how it ended. Lines off the contract are reported as
 * `unparsed`, never dropped silently.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { findPython, TRAINER_ROOT, trainerEnv } from "./process.ts";
import {
  type ArtifactEvent,
  type ExitEvent,
  parseTrainerEvent,
  type ResultEvent,
  type RunSpec,
  type TrainerEvent,
} from "./protocol.ts";

export interface TrainerOutcome {
  code: number | null;
  result: ResultEvent | null;
  /** The last 20 000 characters of stderr. */
  stderr: string;
  artifacts: ArtifactEvent[];
}

export interface TrainerRun {
  /** Ask the trainer to stop: it checkpoints at the next step and exits with TrainerExit.cancelled. */
  stop(): void;
  done: Promise<TrainerOutcome>;
}

export interface TrainerRunOptions {
  /** Directory for spec.json and the trainer's workdir (`<dir>/work`). */
  dir: string;
  python?: string;
  onEvent(event: TrainerEvent): void;
  onUnparsed(line: string): void;
}

const STDERR_TAIL = 20_000;

export async function startTrainerRun(spec: RunSpec, opts: TrainerRunOptions): Promise<TrainerRun> {
  const specPath = join(opts.dir, "spec.json");
  await writeFile(specPath, JSON.stringify(spec, null, 2));
  const child = spawn(findPython(opts.python), trainerArgs(spec, specPath, trainerWorkdir(opts.dir)), {
    cwd: TRAINER_ROOT,
    env: trainerEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const outcome: TrainerOutcome = { code: null, result: null, stderr: "", artifacts: [] };
  let stated: ExitEvent | null = null;
  child.stderr.on("data", (chunk) => {
    outcome.stderr = (outcome.stderr + chunk).slice(-STDERR_TAIL);
  });
  createInterface({ input: child.stdout }).on("line", (line) => {
    let event: TrainerEvent;
    try {
      event = parseTrainerEvent(line);
    } catch {
      opts.onUnparsed(line);
      return;
    }
    if (event.type === "exit") {
      stated = event;
      return;
    }
    if (event.type === "artifact") outcome.artifacts.push(event);
    if (event.type === "result") outcome.result = event;
    opts.onEvent(event);
  });
  const done = new Promise<TrainerOutcome>((resolve) => {
    child.on("close", (code) => resolve(asSingleProcess(outcome, code, stated)));
    child.on("error", (error) => {
      outcome.stderr += String(error);
    });
  });
  return { stop: () => child.kill("SIGTERM"), done };
}

/**
 * The command line: the trainer itself, or torchrun starting `spec.processes` of it on this
 * machine (`--standalone`: a local rendezvous on a free port).
 */
export function trainerArgs(spec: RunSpec, specPath: string, workdir: string): string[] {
  const trainer = ["-m", "trapdoor_trainer", "run", "--spec", specPath, "--workdir", workdir];
  const processes = spec.processes ?? 1;
  if (processes <= 1) return trainer;
  // PyTorch's torchrun, through trapdoor_trainer.torchrun for one fix on Debian's torch 1.13
  return ["-m", "trapdoor_trainer.torchrun", "--standalone", `--nproc_per_node=${processes}`, ...trainer];
}

/** Under torchrun, the exit code and error rank 0 stated replace torchrun's own. */
function asSingleProcess(
  outcome: TrainerOutcome,
  code: number | null,
  stated: ExitEvent | null,
): TrainerOutcome {
  if (stated === null) return { ...outcome, code };
  const error = stated.error ? `\n${JSON.stringify(stated.error)}` : "";
  return { ...outcome, code: stated.code, stderr: (outcome.stderr + error).slice(-STDERR_TAIL) };
}

/** Where the trainer of a run started with `dir` writes its files (artifact paths are relative to it). */
export function trainerWorkdir(dir: string): string {
  return join(dir, "work");
}
