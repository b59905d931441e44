/**
 * What a worker does to a job's record while it runs it: claim, start, heartbeat, progress,
 * metrics, checkpoints, and the end of the attempt (artifacts stored, cancelled, rejected, or
 * retried). Every status change goes through the lifecycle's transitions; the worker itself only
 * moves bytes and processes.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { DataSource } from "typeorm";
import { isGpuQueue } from "../config.ts";
import { stageCanonical } from "../datasets/staging.ts";
import type { DatasetRow } from "../db/datasets.ts";
import type { JobStatus } from "../db/job-lifecycle.ts";
import { artifactsOf, insertMetric, upsertArtifact } from "../db/job-outputs.ts";
import { firstRunningAt, getJob, heartbeat, type JobRow, transition, updateRunning } from "../db/jobs.ts";
import { getModel } from "../db/models.ts";
import { stageModel } from "../models/service.ts";
import type { JobQueue, QueueMessage } from "../queue/job-queue.ts";
import { keys } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import type { WorkerDevice } from "../trainer/device.ts";
import { trainerRejection } from "../trainer/process.ts";
import { type RunSpec, TrainerExit } from "../trainer/protocol.ts";
import type { TrainerOutcome } from "../trainer/run.ts";
import { ingestHealth } from "./health-ingest.ts";
import { reapStaleJobs, retryOrFail } from "./recovery.ts";

export type { JobRow };

/** Where a finished trainer's files are: its workdir, and the training set it read. */
export interface TrainerFiles {
  workdir: string;
  trainDir: string;
}

export interface JobProgress {
  stage: string;
  epoch: number;
  epochs: number;
  fraction: number;
  imagesPerSecond: number;
}

export class JobExecution {
  constructor(
    private readonly db: DataSource,
    private readonly store: ObjectStore,
    private readonly queue: JobQueue,
  ) {}

  /**
   * Take a queued job for this attempt: null for stale or duplicate deliveries (the job was
   * cancelled, or this attempt already ran) and when another worker won the race.
   */
  async claim(message: QueueMessage, worker: string, device: WorkerDevice): Promise<JobRow | null> {
    const job = await getJob(this.db, null, message.jobId);
    if (job?.status !== "QUEUED" || message.attempt !== job.attempt + 1) return null;
    return transition(
      this.db,
      job.id,
      "STARTING",
      `claimed by ${worker}`,
      { attempt: message.attempt, worker, device, heartbeat_at: new Date() },
      ["QUEUED"],
    );
  }

  /**
   * Stage the job's datasets and its last checkpoint under `dir` and return the trainer's spec.
   * Datasets are checked against their manifests' sha256 on the way.
   */
  async prepare(job: JobRow, dir: string): Promise<RunSpec> {
    const data: Record<string, string> = {};
    const roles: [string, string | null][] = [
      ["train", job.train_dataset_id],
      ["holdout", job.holdout_dataset_id],
      ["test", job.test_dataset_id],
      ["asrTest", job.asr_test_dataset_id],
    ];
    for (const [role, id] of roles) {
      if (!id) continue;
      const dataset = (await this.db.query("SELECT * FROM datasets WHERE id = $1", [id]))[0] as
        | DatasetRow
        | undefined;
      if (!dataset) throw new Error(`dataset ${id} vanished`);
      data[role] = await stageCanonical(this.store, dataset, join(dir, "data", role));
    }
    const initModel = await this.stageStartingModel(job, join(dir, "init"));
    let resumeFrom: string | null = null;
    if (job.checkpoint_key && (await this.store.stat(job.checkpoint_key))) {
      resumeFrom = join(dir, "resume.pt");
      await this.store.downloadToFile(job.checkpoint_key, resumeFrom);
    }
    return {
      jobId: job.id,
      method: job.method,
      architecture: job.architecture as RunSpec["architecture"],
      data: {
        train: data.train as string,
        holdout: data.holdout as string,
        test: data.test as string,
        asrTest: data.asrTest ?? null,
        initModel,
      },
      attack: job.attack,
      target: job.target,
      hyperparameters: job.hyperparameters as RunSpec["hyperparameters"],
      seed: job.seed,
      device: isGpuQueue(job.queue) ? "cuda" : "cpu",
      // one process per GPU (torchrun + DDP); checkpoints resume on any count
      processes: isGpuQueue(job.queue) ? (job.gpus ?? 1) : 1,
      resumeFrom,
    };
  }

  /** The model a post-training defense or an evaluation starts from, staged in `dir` (null: none). */
  private async stageStartingModel(job: JobRow, dir: string): Promise<string | null> {
    if (job.model_id) {
      const model = await getModel(this.db, null, job.model_id);
      if (!model) throw new Error(`model ${job.model_id} vanished`);
      return stageModel(this.store, model, dir);
    }
    if (job.init_job_id) {
      const artifacts = await artifactsOf(this.db, job.tenant_id, job.init_job_id);
      for (const file of ["model.safetensors", "config.json"]) {
        const artifact = artifacts.find((a) => a.file_name === file);
        if (!artifact) throw new Error(`job ${job.init_job_id} no longer has its ${file}`);
        const got = await this.store.downloadToFile(artifact.storage_key, join(dir, file));
        if (got.sha256 !== artifact.sha256)
          throw new Error(`${file} of job ${job.init_job_id} does not match its sha256`);
      }
      return dir;
    }
    return null;
  }

  /**
   * Milliseconds the job may still run under its `maxRuntimeSeconds`, counted from its first
   * start across attempts; null when it has no cap.
   */
  async runtimeLeft(job: JobRow): Promise<number | null> {
    if (job.max_runtime_seconds == null) return null;
    const since = (await firstRunningAt(this.db, job.id)) ?? new Date();
    return since.getTime() + job.max_runtime_seconds * 1000 - Date.now();
  }

  /** The job ran past `maxRuntimeSeconds`: keep its checkpoint (a retry resumes it) and fail it. */
  async overRuntime(job: JobRow, checkpoint?: string): Promise<void> {
    if (checkpoint && (await stat(checkpoint).catch(() => null))) await this.checkpoint(job, checkpoint);
    await transition(this.db, job.id, "FAILED", "maximum runtime exceeded", {
      error: {
        code: "MAX_RUNTIME_EXCEEDED",
        message: `the job ran longer than its maxRuntimeSeconds (${job.max_runtime_seconds}); its checkpoint is kept for retryJob`,
      },
    });
  }

  /** The trainer started; false when the job was cancelled meanwhile (the caller stops the trainer). */
  async started(job: JobRow): Promise<boolean> {
    const running = await transition(
      this.db,
      job.id,
      "RUNNING",
      "trainer started",
      { heartbeat_at: new Date() },
      ["STARTING"],
    );
    return running !== null;
  }

  /** Refreshes the heartbeat; returns the job's status (CANCELLING asks the worker to stop). */
  heartbeat(job: JobRow): Promise<JobStatus | null> {
    return heartbeat(this.db, job.id);
  }

  progress(job: JobRow, progress: JobProgress): Promise<void> {
    return updateRunning(this.db, job.id, { progress });
  }

  logTail(job: JobRow, lines: string[]): Promise<void> {
    return updateRunning(this.db, job.id, { logTail: lines });
  }

  metric(job: JobRow, m: { stage: string; epoch: number | null; name: string; value: number | null }) {
    return insertMetric(this.db, job.id, job.attempt, m.stage, m.epoch, m.name, m.value);
  }

  /** Keep the trainer's latest checkpoint, so a later attempt (or a retry) resumes from it. */
  async checkpoint(job: JobRow, path: string): Promise<void> {
    const key = keys.checkpoint(job.tenant_id, job.id);
    await this.store.putFile(key, path);
    await updateRunning(this.db, job.id, { checkpointKey: key });
  }

  /**
   * Hand a job back to the queue because its worker is shutting down (a rolling update, a spot
   * node taken back): the checkpoint is kept and the attempt is not spent, so the next worker
   * resumes it as the same attempt. A job the user cancelled meanwhile ends CANCELLED instead.
   */
  async handBack(job: JobRow, checkpoint?: string): Promise<void> {
    if (checkpoint && (await stat(checkpoint).catch(() => null))) await this.checkpoint(job, checkpoint);
    const current = await getJob(this.db, null, job.id);
    if (current?.status === "CANCELLING") {
      await transition(this.db, job.id, "CANCELLED", "stopped as its worker shut down");
      return;
    }
    const queued = await transition(
      this.db,
      job.id,
      "QUEUED",
      "worker shutdown",
      { attempt: job.attempt - 1, worker: null },
      ["STARTING", "RUNNING"],
    );
    if (queued)
      await this.queue.enqueue(
        job.queue,
        { jobId: job.id, attempt: job.attempt },
        `handed-back-${Date.now()}`,
      );
  }

  /** A job by id (no tenant scope: workers only). */
  peek(id: string): Promise<JobRow | null> {
    return getJob(this.db, null, id);
  }

  /** Put an unclaimed message back, for a worker that is shutting down and must not start it. */
  resend(queueName: JobRow["queue"], message: QueueMessage): Promise<void> {
    return this.queue.enqueue(queueName, message, `resent-${Date.now()}`);
  }

  /**
   * End the attempt according to how the trainer ended (`files.workdir` holds its files,
   * `files.trainDir` the staged training set its health report refers to).
   */
  async finish(
    job: JobRow,
    outcome: TrainerOutcome,
    files: TrainerFiles,
    stoppedFor: "shutdown" | "runtime" | null = null,
  ): Promise<void> {
    const { workdir } = files;
    const current = await getJob(this.db, null, job.id);
    if (
      stoppedFor === "runtime" &&
      outcome.code === TrainerExit.cancelled &&
      current?.status !== "CANCELLING"
    ) {
      await this.overRuntime(job, join(workdir, "checkpoints", "latest.pt"));
      return;
    }
    const shuttingDown = stoppedFor === "shutdown";
    if (shuttingDown && outcome.code === TrainerExit.cancelled && current?.status !== "CANCELLING") {
      await this.handBack(job, join(workdir, "checkpoints", "latest.pt"));
      return;
    }
    if (outcome.code === TrainerExit.ok && outcome.result) {
      await this.succeed(job, outcome, files, current?.status);
      return;
    }
    if (outcome.code === TrainerExit.cancelled) {
      // The trainer wrote its checkpoint before exiting; keep it so a retry resumes from there.
      const checkpoint = join(workdir, "checkpoints", "latest.pt");
      if (await stat(checkpoint).catch(() => null)) await this.checkpoint(job, checkpoint);
      await transition(this.db, job.id, "CANCELLED", "trainer stopped after SIGTERM; checkpoint stored");
      return;
    }
    if (outcome.code === TrainerExit.invalid) {
      await transition(this.db, job.id, "FAILED", "the trainer rejected the job's inputs", {
        error: { code: "INVALID_INPUT", message: rejectionMessage(outcome.stderr) },
      });
      return;
    }
    if (current?.status === "CANCELLING") {
      await transition(this.db, job.id, "CANCELLED", "trainer ended during cancellation");
      return;
    }
    const lastLines = outcome.stderr.trim().split("\n").slice(-3).join(" | ");
    await this.failed(job, `trainer exited with code ${outcome.code}: ${lastLines}`);
  }

  /** Re-queue (or end) jobs whose worker stopped heartbeating; see recovery.ts. */
  reapStale(staleAfterSeconds: number): Promise<number> {
    return reapStaleJobs(this.db, this.queue, staleAfterSeconds);
  }

  /** An infrastructure failure of this attempt: retried from the last checkpoint while attempts remain. */
  failed(job: JobRow, message: string): Promise<void> {
    return retryOrFail(this.db, this.queue, job.id, message);
  }

  private async succeed(
    job: JobRow,
    outcome: TrainerOutcome,
    { workdir, trainDir }: TrainerFiles,
    status: JobStatus | undefined,
  ): Promise<void> {
    const uploading = await transition(
      this.db,
      job.id,
      "UPLOADING",
      "trainer finished",
      { metrics: outcome.result },
      ["RUNNING"],
    );
    if (!uploading) {
      if (status === "CANCELLING")
        await transition(this.db, job.id, "CANCELLED", "cancelled as the trainer finished");
      return;
    }
    for (const artifact of outcome.artifacts) {
      const key = keys.artifact(job.tenant_id, job.id, artifact.path);
      const stored = await this.store.putFile(key, join(workdir, artifact.path));
      if (stored.sha256 !== artifact.sha256 || stored.sizeBytes !== artifact.sizeBytes)
        throw new Error(`artifact ${artifact.path} changed between the trainer and the store`);
      await upsertArtifact(this.db, {
        jobId: job.id,
        tenantId: job.tenant_id,
        kind: artifact.kind,
        format: artifact.format,
        fileName: artifact.path,
        key,
        sizeBytes: stored.sizeBytes,
        sha256: stored.sha256,
      });
    }
    await ingestHealth(this.db, this.store, job, workdir, trainDir);
    await transition(this.db, job.id, "SUCCEEDED", "artifacts stored", {}, ["UPLOADING"]);
  }
}

function rejectionMessage(stderr: string): string {
  const { field, message } = trainerRejection(stderr);
  return field ? `${field}: ${message}` : message;
}
