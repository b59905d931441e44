/** What a launch asks of its worker: where it runs, how many GPUs, how long it may run. */
import { gpuQueue, type TrainingQueue } from "../config.ts";
import { badInput } from "../errors.ts";

export interface ResourcesInput {
  /** Deprecated: accelerator GPU. */
  gpu?: boolean | null;
  accelerator?: "CPU" | "GPU" | null;
  gpus?: number | null;
  maxRuntimeSeconds?: number | null;
}

/** The longest runtime cap a job may ask for: 30 days. */
const MAX_RUNTIME_CAP = 30 * 24 * 3600;

/** The queue, GPU count and runtime cap a launch asks for; BAD_USER_INPUT names the field. */
export function jobResources(given: ResourcesInput | null | undefined, gpuCounts: readonly number[]) {
  const legacy = given?.gpu;
  const accelerator = given?.accelerator ?? (legacy ? "GPU" : "CPU");
  if (legacy != null && given?.accelerator != null && legacy !== (given.accelerator === "GPU"))
    throw badInput(
      "resources.gpu (deprecated) contradicts resources.accelerator; give accelerator only",
      "resources.gpu",
    );
  let gpus: number | null = null;
  if (accelerator === "GPU") {
    gpus = given?.gpus ?? 1;
    if (!gpuCounts.includes(gpus))
      throw badInput(
        `resources.gpus must be one of ${gpuCounts.join(", ")} (the GPU counts offered)`,
        "resources.gpus",
      );
  } else if (given?.gpus != null) {
    throw badInput("resources.gpus needs accelerator: GPU", "resources.gpus");
  }
  const maxRuntimeSeconds = given?.maxRuntimeSeconds ?? null;
  if (
    maxRuntimeSeconds !== null &&
    (!Number.isInteger(maxRuntimeSeconds) || maxRuntimeSeconds < 1 || maxRuntimeSeconds > MAX_RUNTIME_CAP)
  )
    throw badInput(
      `resources.maxRuntimeSeconds must be an integer from 1 to ${MAX_RUNTIME_CAP}`,
      "resources.maxRuntimeSeconds",
    );
  const queue: TrainingQueue = gpus === null ? "cpu" : gpuQueue(gpus);
  return { queue, gpus, maxRuntimeSeconds };
}
