/**
 * A worker's handling of one queue message: claim the job, stage its inputs, run the trainer,
 * turn its events into the job's record while it runs, and end the attempt. What each step means
 * for the job (transitions, retries, artifacts) is the jobs service's (src/jobs/execution.ts);
 * this module moves bytes, keeps the heartbeat and drives the process.
 */
import { mkdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { JobExecution, JobRow } from "../jobs/execution.ts";
import type { Logger } from "../log.ts";
import type { QueueMessage } from "../queue/job-queue.ts";
import type { WorkerDevice } from "../trainer/device.ts";
import type { TrainerEvent } from "../trainer/protocol.ts";
import { startTrainerRun, type TrainerOutcome, trainerWorkdir } from "../trainer/run.ts";

export interface RunnerOptions {
  execution: JobExecution;
  /** What this worker runs on (asked of the trainer once, when the worker starts). */
  device: WorkerDevice;
  scratchDir: string;
  heartbeatSeconds: number;
  python?: string;
  name?: string;
  /** Called when this runner claims a job, and when it is done with one it claimed. */
  onClaimed?: () => void;
  onJobDone?: () => void;
  /** Called with every progress report of a trainer (metrics). */
  onProgress?: (stage: string, imagesPerSecond: number) => void;
  log?: Logger;
}

const LOG_TAIL = 50;
/** Progress is written at most once a second (and at the end of every epoch). */
const PROGRESS_INTERVAL_MS = 1000;

export class JobRunner {
  readonly name: string;
  private shuttingDown = false;
  private readonly handling = new Set<Promise<void>>();
  private readonly trainers = new Set<{ stop(): void }>();

  constructor(private readonly opts: RunnerOptions) {
    this.name = opts.name ?? `${hostname()}:${process.pid}`;
  }

  handle(message: QueueMessage): Promise<void> {
    const handled = this.handleMessage(message);
    this.handling.add(handled);
    return handled.finally(() => this.handling.delete(handled));
  }

  /**
   * Stop for a shutdown (SIGTERM: a rolling update, a spot node taken back): running trainers
   * checkpoint and their jobs go back to the queue without spending an attempt; resolves when
   * every job this runner held is handed back or finished. The caller stops taking messages first.
   */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const trainer of this.trainers) trainer.stop();
    while (this.handling.size > 0) await Promise.allSettled([...this.handling]);
  }

  private async handleMessage(message: QueueMessage): Promise<void> {
    const { execution } = this.opts;
    if (this.shuttingDown) {
      // Taken just as the worker stops: leave it, untouched, for another worker.
      const job = await execution.peek(message.jobId);
      if (job) await execution.resend(job.queue, message);
      return;
    }
    const job = await execution.claim(message, this.name, this.opts.device);
    if (!job) return;
    this.opts.onClaimed?.();
    const log = (msg: string, fields: Record<string, unknown> = {}) =>
      this.opts.log?.info(msg, { jobId: job.id, attempt: message.attempt, worker: this.name, ...fields });
    log("job claimed", { method: job.method, queue: job.queue });
    const scratch = join(this.opts.scratchDir, `${job.id}-${message.attempt}`);
    try {
      await mkdir(scratch, { recursive: true });
      const spec = await execution.prepare(job, scratch);
      if (this.shuttingDown) {
        await execution.handBack(job);
        return;
      }
      const left = await execution.runtimeLeft(job);
      if (left !== null && left <= 0) {
        await execution.overRuntime(job);
        return;
      }
      let overRuntime = false;
      const outcome = await this.runTrainer(job, spec, scratch, left, () => {
        overRuntime = true;
      });
      const stoppedFor = this.shuttingDown ? "shutdown" : overRuntime ? "runtime" : null;
      await execution.finish(
        job,
        outcome,
        { workdir: trainerWorkdir(scratch), trainDir: spec.data.train },
        stoppedFor,
      );
      log("trainer ended", { exitCode: outcome.code, stoppedFor });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      this.opts.log?.error("job attempt failed", { jobId: job.id, attempt: message.attempt, reason });
      await execution.failed(job, reason);
    } finally {
      await rm(scratch, { recursive: true, force: true });
      this.opts.onJobDone?.();
    }
  }

  /** Runs the trainer; after `runtimeMs` (when given) stops it and calls `onOverRuntime`. */
  private async runTrainer(
    job: JobRow,
    spec: Parameters<typeof startTrainerRun>[0],
    scratch: string,
    runtimeMs: number | null,
    onOverRuntime: () => void,
  ): Promise<TrainerOutcome> {
    const { execution } = this.opts;
    const record = new JobRecorder(execution, job);
    const run = await startTrainerRun(spec, {
      dir: scratch,
      python: this.opts.python,
      onEvent: (event) => {
        if (event.type === "progress") this.opts.onProgress?.(event.stage, event.imagesPerSecond);
        record.event(event);
      },
      onUnparsed: (line) => record.log(`[unparsed] ${line.slice(0, 500)}`, false),
    });
    this.trainers.add(run);
    if (!(await execution.started(job)) || this.shuttingDown) run.stop(); // cancelled or shutting down meanwhile
    let stopping = false;
    const deadline =
      runtimeMs === null
        ? undefined
        : setTimeout(() => {
            onOverRuntime();
            run.stop();
          }, runtimeMs);
    const beat = setInterval(() => {
      record.write(async () => {
        if ((await execution.heartbeat(job)) === "CANCELLING" && !stopping) {
          stopping = true;
          run.stop();
        }
      });
    }, this.opts.heartbeatSeconds * 1000);
    try {
      const outcome = await run.done;
      await record.flushed();
      return outcome;
    } finally {
      clearInterval(beat);
      clearTimeout(deadline);
      this.trainers.delete(run);
    }
  }
}

/**
 * Writes a running job's events to its record one at a time, in order, so the database never
 * sees them reordered; a failed write is dropped (the next one carries the state forward).
 */
class JobRecorder {
  private pending: Promise<unknown> = Promise.resolve();
  private lastProgressWrite = 0;
  private readonly logTail: string[];

  constructor(
    private readonly execution: JobExecution,
    private readonly job: JobRow,
  ) {
    this.logTail = [...job.log_tail];
  }

  write(fn: () => Promise<unknown>): void {
    this.pending = this.pending.then(fn).catch(() => {});
  }

  flushed(): Promise<unknown> {
    return this.pending;
  }

  log(message: string, persist = true): void {
    this.logTail.push(message);
    this.logTail.splice(0, Math.max(0, this.logTail.length - LOG_TAIL));
    if (persist) {
      const lines = [...this.logTail];
      this.write(() => this.execution.logTail(this.job, lines));
    }
  }

  event(event: TrainerEvent): void {
    const { execution, job } = this;
    switch (event.type) {
      case "progress": {
        const now = Date.now();
        if (now - this.lastProgressWrite < PROGRESS_INTERVAL_MS && event.step !== event.steps) return;
        this.lastProgressWrite = now;
        const { stage, epoch, epochs, fraction, imagesPerSecond } = event;
        this.write(() => execution.progress(job, { stage, epoch, epochs, fraction, imagesPerSecond }));
        break;
      }
      case "metric":
        this.write(() => execution.metric(job, event));
        break;
      case "checkpoint":
        this.write(() => execution.checkpoint(job, event.path));
        break;
      case "log":
        this.log(event.message);
        break;
      case "artifact":
      case "result":
        break; // collected into the outcome by the trainer run
    }
  }
}
