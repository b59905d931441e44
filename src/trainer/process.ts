import { spawn, spawnSync } from "node:child_process";
import { projectPath } from "../paths.ts";

/** Root of the Python trainer package (the trainer runs with this as cwd / PYTHONPATH). */
export const TRAINER_ROOT = projectPath("trainer");

let cachedPython: string | undefined;

/** $TRAPDOOR_PYTHON (or the configured one), else the first of python3, /usr/bin/python3 that imports torch. */
export function findPython(configured?: string): string {
  if (configured) return configured;
  if (process.env.TRAPDOOR_PYTHON) return process.env.TRAPDOOR_PYTHON;
  if (cachedPython) return cachedPython;
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    const probe = spawnSync(candidate, ["-c", "import torch, numpy"], { stdio: "ignore" });
    if (probe.status === 0) {
      cachedPython = candidate;
      return candidate;
    }
  }
  throw new Error("no Python with torch found: install python3-torch or set TRAPDOOR_PYTHON");
}

export function trainerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PYTHONPATH: TRAINER_ROOT, PYTHONUNBUFFERED: "1" };
}

export interface TrainerOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The trainer's refusal (exit code 2): `{field, message}` JSON on its last stderr line; a line that
 * is not that JSON is the message itself.
 */
export function trainerRejection(stderr: string): { field?: string; message: string } {
  const line = stderr.trim().split("\n").at(-1) || "invalid input";
  try {
    const parsed = JSON.parse(line) as { field?: string; message?: string };
    return { field: parsed.field, message: parsed.message ?? line };
  } catch {
    return { message: line };
  }
}

/** Run a short trainer command (describe, poison) to completion. */
export function runTrainerCommand(args: string[], python?: string): Promise<TrainerOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(findPython(python), ["-m", "trapdoor_trainer", ...args], {
      cwd: TRAINER_ROOT,
      env: trainerEnv(),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
