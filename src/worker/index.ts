import type { AddressInfo } from "node:net";
import { type Config, isGpuQueue, type QueueName } from "../config.ts";
import type { DatasetProcessor } from "../datasets/processing.ts";
import type { JobExecution } from "../jobs/execution.ts";
import type { WorkerRegistry } from "../jobs/workers.ts";
import { createLogger, type Logger } from "../log.ts";
import type { ModelService } from "../models/service.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import { describeDevice } from "../trainer/device.ts";
import { WorkerMetrics } from "./metrics.ts";
import { JobRunner } from "./runner.ts";

export interface RunningWorker {
  runner: JobRunner;
  /** Where /metrics is served (TRAPDOOR_METRICS_PORT), when it is. */
  metricsPort?: number;
  queues: QueueName[];
  /** With `worker.once`: settles when the one job is done, or when none came in time. */
  done?: Promise<"job done" | "idle">;
  stop(): Promise<void>;
}

/** The services a worker runs work through. */
export interface WorkerServices {
  execution: JobExecution;
  datasets: DatasetProcessor;
  /** Checks uploaded models (queue `poison`). */
  models: ModelService;
  /** Where the worker says which queues it serves (a launch nobody can serve is refused). */
  workers: WorkerRegistry;
}

/**
 * Start a worker: serve the queues this machine can (gpu only with CUDA; by default every other
 * queue too: cpu training, dataset ingest and poisoning), and reap lost jobs and datasets.
 */
export async function startWorker(
  config: Config,
  services: WorkerServices,
  queue: JobQueue,
  name?: string,
  log: Logger = createLogger(config.logFormat),
): Promise<RunningWorker> {
  const { execution, datasets } = services;
  const device = await describeDevice(config.python);
  const queues: QueueName[] =
    config.worker.queues.length > 0
      ? config.worker.queues
      : device.type === "cuda"
        ? ["gpu", "cpu", "ingest", "poison"]
        : ["cpu", "ingest", "poison"];
  const gpuQueues = queues.filter(isGpuQueue);
  if (gpuQueues.length > 0 && device.type !== "cuda")
    throw new Error(`this worker has no CUDA device and cannot serve ${gpuQueues.join(", ")}`);
  let finish: (why: "job done" | "idle") => void = () => {};
  const done = new Promise<"job done" | "idle">((resolve) => {
    finish = resolve;
  });
  const idle = config.worker.once
    ? setTimeout(() => finish("idle"), config.worker.onceIdleSeconds * 1000)
    : undefined;
  const metrics = new WorkerMetrics();
  const metricsServer =
    config.worker.metricsPort === undefined ? undefined : await metrics.serve(config.worker.metricsPort);
  const runner = new JobRunner({
    device,
    onClaimed: () => {
      clearTimeout(idle);
      metrics.jobStarted();
    },
    onJobDone: () => {
      metrics.jobFinished();
      finish("job done");
    },
    onProgress: (stage, imagesPerSecond) => metrics.progress(stage, imagesPerSecond),
    log,
    execution,
    scratchDir: `${config.dataDir}/scratch`,
    heartbeatSeconds: config.worker.heartbeatSeconds,
    python: config.python,
    name,
  });
  await queue.start();
  if (queues.includes("ingest")) {
    datasets
      .warm()
      .catch((e) => log.error("decoding threads did not start", { error: (e as Error).message }));
  }
  const every = config.worker.pollingIntervalSeconds;
  for (const q of queues) {
    if (q === "poison")
      await queue.work(q, every, (m) =>
        "modelId" in m
          ? services.models.validate(m, `${config.dataDir}/scratch`, {
              python: config.python,
              heartbeatSeconds: config.worker.heartbeatSeconds,
            })
          : datasets.handle(m, runner.name),
      );
    else if (q === "ingest") await queue.work(q, every, (m) => datasets.handle(m, runner.name));
    else await queue.work(q, every, (m) => runner.handle(m));
  }
  // Registered once it takes work; the registry's heartbeat rides on the reaper's timer.
  await services.workers.register(runner.name, queues);
  const reapEvery = Math.max(1, Math.floor(config.worker.staleAfterSeconds / 2)) * 1000;
  const reaper = setInterval(() => {
    services.workers.heartbeat(runner.name).catch(() => {});
    execution.reapStale(config.worker.staleAfterSeconds).catch(() => {});
    datasets.reapStale(config.worker.staleAfterSeconds).catch(() => {});
    services.models.reapStale(config.worker.staleAfterSeconds).catch(() => {});
  }, reapEvery);
  return {
    runner,
    queues,
    done: config.worker.once ? done : undefined,
    metricsPort: (metricsServer?.address() as AddressInfo | null)?.port,
    /** A graceful stop: take no more messages, hand running jobs back with their checkpoints. */
    async stop() {
      clearInterval(reaper);
      clearTimeout(idle);
      metricsServer?.close();
      for (const q of queues) await queue.stopWorking(q).catch(() => {});
      await runner.shutdown();
      await services.workers.unregister(runner.name).catch(() => {});
    },
  };
}
