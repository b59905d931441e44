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
  const child = spawn(
    findPython(opts.python),
    ["-m", "trapdoor_trainer", "run", "--spec", specPath, "--workdir", trainerWorkdir(opts.dir)],
    { cwd: TRAINER_ROOT, env: trainerEnv(), stdio: ["ignore", "pipe", "pipe"] },
  );
  const outcome: TrainerOutcome = { code: null, result: null, stderr: "", artifacts: [] };
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
    if (event.type === "artifact") outcome.artifacts.push(event);
    if (event.type === "result") outcome.result = event;
    opts.onEvent(event);
  });
  const done = new Promise<TrainerOutcome>((resolve) => {
    child.on("close", (code) => resolve({ ...outcome, code }));
    child.on("error", (error) => {
      outcome.stderr += String(error);
    });
  });
  return { stop: () => child.kill("SIGTERM"), done };
}

/** Where the trainer of a run started with `dir` writes its files (artifact paths are relative to it). */
export function trainerWorkdir(dir: string): string {
  return join(dir, "work");
}
