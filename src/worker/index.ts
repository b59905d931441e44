import type { Config, QueueName } from "../config.ts";
import type { JobExecution } from "../jobs/execution.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import { describeDevice } from "../trainer/device.ts";
import { JobRunner } from "./runner.ts";

export interface RunningWorker {
  runner: JobRunner;
  queues: QueueName[];
  stop(): Promise<void>;
}

/** Start a worker: serve the queues this machine can (gpu only with CUDA), and reap lost jobs. */
export async function startWorker(
  config: Config,
  execution: JobExecution,
  queue: JobQueue,
  name?: string,
): Promise<RunningWorker> {
  const device = await describeDevice(config.python);
  const queues: QueueName[] =
    config.worker.queues.length > 0
      ? config.worker.queues
      : device.type === "cuda"
        ? ["gpu", "cpu"]
        : ["cpu"];
  if (queues.includes("gpu") && device.type !== "cuda")
    throw new Error("this worker has no CUDA device and cannot serve the gpu queue");
  const runner = new JobRunner({
    execution,
    scratchDir: `${config.dataDir}/scratch`,
    heartbeatSeconds: config.worker.heartbeatSeconds,
    python: config.python,
    name,
  });
  await queue.start();
  for (const q of queues) await queue.work(q, config.worker.pollingIntervalSeconds, (m) => runner.handle(m));
  const reapEvery = Math.max(1, Math.floor(config.worker.staleAfterSeconds / 2)) * 1000;
  const reaper = setInterval(() => {
    execution.reapStale(config.worker.staleAfterSeconds).catch(() => {});
  }, reapEvery);
  return {
    runner,
    queues,
    async stop() {
      clearInterval(reaper);
    },
  };
}
