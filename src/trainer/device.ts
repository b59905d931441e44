import { findPython, runTrainerCommand } from "./process.ts";

export interface WorkerDevice {
  type: "cpu" | "cuda";
  name: string;
  memoryBytes?: number;
}

/** What this worker can run on, asked of the trainer's own torch (so it matches what jobs will see). */
export async function describeDevice(python?: string): Promise<WorkerDevice> {
  findPython(python);
  const out = await runTrainerCommand(["device"], python);
  if (out.code !== 0) return { type: "cpu", name: "unknown" };
  return JSON.parse(out.stdout) as WorkerDevice;
}
