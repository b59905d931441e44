/**
 * The worker ⇄ trainer contract, TypeScript side. Mirrors trainer/trapdoor_trainer/spec.py
 * (RunSpec) and events.py (the JSON-lines events). tests/worker/trainer-protocol.test.ts runs the
 * real trainer and checks both directions against these types.
 */

/** A defense method's name; schema/catalog.json (src/trainer/catalog.ts) lists those the trainer registers. */
export type Method = string;
export type Architecture = "wrn16-1" | "resnet18" | "resnet34" | "small-cnn";
export type Device = "auto" | "cpu" | "cuda";

export interface RunSpec {
  jobId?: string | null;
  method: Method;
  architecture?: Architecture;
  /** initModel: the directory of the model a post-training defense or an evaluation starts from. */
  data: { train: string; holdout: string; test: string; asrTest?: string | null; initModel?: string | null };
  attack?: { name: string; target: number; params?: Record<string, unknown> } | null;
  target?: number | null;
  hyperparameters?: Record<string, number | string | boolean | null>;
  seed?: number;
  device?: Device;
  /** Processes for the job (one per GPU): more than 1 runs the trainer under torchrun. */
  processes?: number;
  resumeFrom?: string | null;
}

/** Exit codes of `python -m trapdoor_trainer run`. Anything else is a crash (retryable). */
export const TrainerExit = { ok: 0, invalid: 2, cancelled: 3 } as const;

interface EventBase {
  time: number;
}

export interface ProgressEvent extends EventBase {
  type: "progress";
  stage: string;
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  fraction: number;
  lr: number;
  loss: Record<string, number>;
  imagesPerSecond: number;
}

export interface MetricEvent extends EventBase {
  type: "metric";
  name: string;
  value: number | null;
  stage: string;
  epoch: number | null;
}

export interface CheckpointEvent extends EventBase {
  type: "checkpoint";
  path: string;
  stage: string;
  epoch: number;
  step: number;
}

export interface ArtifactEvent extends EventBase {
  type: "artifact";
  kind: "model" | "config" | "metadata" | "onnx" | "preview" | "health" | "bundle";
  format: "safetensors" | "json" | "onnx" | "png" | "tar" | "npy";
  /** Relative to the trainer's workdir. */
  path: string;
  sha256: string;
  sizeBytes: number;
}

export interface LogEvent extends EventBase {
  type: "log";
  level: string;
  message: string;
}

export interface ResultEvent extends EventBase {
  type: "result";
  method: Method;
  /** Fractions in [0, 1]; null where not measurable (no trigger known, no decoder). */
  asr: number | null;
  /** null for a SCAN, which trains no model. */
  ca: number | null;
  mse: number | null;
  mseTriggered?: number | null;
  stage1Asr?: number | null;
  stage1Ca?: number;
  timings: Record<string, number>;
  imagesPerSecond: Record<string, number>;
  device: { type: "cpu" | "cuda"; name: string; memoryBytes?: number; threads?: number; processes?: number };
}

/**
 * How the trainer ended, stated by rank 0 when it runs under torchrun (whose own exit code
 * says only that some rank failed); `error` is what a single process prints on stderr.
 */
export interface ExitEvent extends EventBase {
  type: "exit";
  code: number;
  error?: Record<string, unknown>;
}

export type TrainerEvent =
  | ProgressEvent
  | MetricEvent
  | CheckpointEvent
  | ArtifactEvent
  | LogEvent
  | ResultEvent
  | ExitEvent;

/** The error the trainer prints on stderr with exit code 2. */
export interface TrainerSpecError {
  error: "invalid_spec";
  field: string;
  message: string;
}

export class ProtocolError extends Error {}

const REQUIRED: Record<
  TrainerEvent["type"],
  Record<string, "number" | "string" | "object" | "number|null">
> = {
  progress: {
    stage: "string",
    epoch: "number",
    epochs: "number",
    step: "number",
    steps: "number",
    fraction: "number",
    lr: "number",
    loss: "object",
    imagesPerSecond: "number",
  },
  metric: { name: "string", value: "number|null", stage: "string" },
  checkpoint: { path: "string", stage: "string", epoch: "number", step: "number" },
  artifact: { kind: "string", format: "string", path: "string", sha256: "string", sizeBytes: "number" },
  log: { level: "string", message: "string" },
  exit: { code: "number" },
  result: {
    method: "string",
    asr: "number|null",
    ca: "number|null",
    mse: "number|null",
    timings: "object",
    imagesPerSecond: "object",
    device: "object",
  },
};

function matches(value: unknown, kind: string): boolean {
  if (kind === "number|null") return value === null || typeof value === "number";
  if (kind === "object") return typeof value === "object" && value !== null;
  return typeof value === kind;
}

/** Parse one stdout line of the trainer; throws ProtocolError on anything off-contract. */
export function parseTrainerEvent(line: string): TrainerEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ProtocolError(`trainer printed a line that is not JSON: ${line.slice(0, 200)}`);
  }
  if (typeof raw !== "object" || raw === null) throw new ProtocolError("trainer event is not an object");
  const record = raw as Record<string, unknown>;
  const type = record.type;
  if (typeof type !== "string" || !(type in REQUIRED))
    throw new ProtocolError(`unknown trainer event type ${String(type)}`);
  for (const [field, kind] of Object.entries(REQUIRED[type as TrainerEvent["type"]])) {
    if (!matches(record[field], kind))
      throw new ProtocolError(`trainer ${type} event: field ${field} is not ${kind}`);
  }
  if (typeof record.time !== "number") throw new ProtocolError(`trainer ${type} event has no time`);
  return record as unknown as TrainerEvent;
}
