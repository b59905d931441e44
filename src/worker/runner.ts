import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { DataSource } from "typeorm";
import type { DatasetRow } from "../db/datasets.ts";
import {
  getJob,
  heartbeat,
  insertMetric,
  type JobRow,
  transition,
  updateRunning,
  upsertArtifact,
} from "../db/jobs.ts";
import type { JobQueue, QueueMessage } from "../queue/job-queue.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { describeDevice, type WorkerDevice } from "../trainer/device.ts";
import { CANONICAL_FILES, keys, OPTIONAL_CANONICAL_FILES } from "../storage/keys.ts";
import { findPython, TRAINER_ROOT, trainerEnv } from "../trainer/process.ts";
import { parseTrainerEvent, type RunSpec, type TrainerEvent, TrainerExit } from "../trainer/protocol.ts";

export interface RunnerOptions {
  db: DataSource;
  store: ObjectStore;
  queue: JobQueue;
  scratchDir: string;
  heartbeatSeconds: number;
  python?: string;
  name?: string;
}

const LOG_TAIL = 50;

interface TrainerOutcome {
  code: number | null;
  result: TrainerEvent | null;
  stderr: string;
  artifacts: TrainerEvent[];
}

/** Claims a queued job, stages its inputs, runs the trainer, streams its events into Postgres, uploads results. */
export class JobRunner {
  readonly name: string;
  private device: WorkerDevice | undefined;

  constructor(private readonly opts: RunnerOptions) {
    this.name = opts.name ?? `${hostname()}:${process.pid}`;
  }

  async handle(message: QueueMessage): Promise<void> {
    const { db } = this.opts;
    const job = await getJob(db, null, message.jobId);
    // Stale or duplicate deliveries (the job was cancelled, or this attempt already ran) are dropped.
    if (job?.status !== "QUEUED" || message.attempt !== job.attempt + 1) return;
    this.device ??= await describeDevice(this.opts.python);
    const started = await transition(
      db,
      job.id,
      "STARTING",
      `claimed by ${this.name}`,
      { attempt: message.attempt, worker: this.name, device: this.device, heartbeat_at: new Date() },
      ["QUEUED"],
    );
    if (!started) return;
    const scratch = join(this.opts.scratchDir, `${job.id}-${message.attempt}`);
    try {
      await this.run(started, scratch);
    } catch (error) {
      await this.infrastructureFailure(started, error instanceof Error ? error.message : String(error));
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  private async run(job: JobRow, scratch: string): Promise<void> {
    const { db, store } = this.opts;
    await mkdir(scratch, { recursive: true });
    const data: Record<string, string> = {};
    const roles: [string, string | null][] = [
      ["train", job.train_dataset_id],
      ["holdout", job.holdout_dataset_id],
      ["test", job.test_dataset_id],
      ["asrTest", job.asr_test_dataset_id],
    ];
    for (const [role, id] of roles) {
      if (!id) continue;
      const dataset = (await db.query("SELECT * FROM datasets WHERE id = $1", [id]))[0] as
        | DatasetRow
        | undefined;
      if (!dataset) throw new Error(`dataset ${id} vanished`);
      data[role] = await this.stageDataset(dataset, join(scratch, "data", role));
    }
    let resumeFrom: string | null = null;
    if (job.checkpoint_key && (await store.stat(job.checkpoint_key))) {
      resumeFrom = join(scratch, "resume.pt");
      await store.downloadToFile(job.checkpoint_key, resumeFrom);
    }
    const spec: RunSpec = {
      jobId: job.id,
      method: job.method as RunSpec["method"],
      architecture: job.architecture as RunSpec["architecture"],
      data: {
        train: data.train as string,
        holdout: data.holdout as string,
        test: data.test as string,
        asrTest: data.asrTest ?? null,
      },
      attack: job.attack,
      target: job.target,
      hyperparameters: job.hyperparameters as RunSpec["hyperparameters"],
      seed: job.seed,
      device: job.queue === "gpu" ? "cuda" : "cpu",
      resumeFrom,
    };
    await writeFile(join(scratch, "spec.json"), JSON.stringify(spec, null, 2));
    const workdir = join(scratch, "work");
    const child = spawn(
      findPython(this.opts.python),
      ["-m", "trapdoor_trainer", "run", "--spec", join(scratch, "spec.json"), "--workdir", workdir],
      {
        cwd: TRAINER_ROOT,
        env: trainerEnv(),
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    if (
      !(await transition(db, job.id, "RUNNING", "trainer started", { heartbeat_at: new Date() }, [
        "STARTING",
      ]))
    ) {
      child.kill("SIGTERM"); // cancelled while staging
    }
    const outcome = await this.follow(job, child);
    await this.finish(job, outcome, workdir);
  }

  /** Download a dataset's canonical files, checking each against the manifest's sha256. */
  private async stageDataset(dataset: DatasetRow, dir: string): Promise<string> {
    const { store } = this.opts;
    await mkdir(dir, { recursive: true });
    const expected = ((dataset.manifest ?? {}) as { sha256?: Record<string, string> }).sha256 ?? {};
    for (const file of [...CANONICAL_FILES, ...OPTIONAL_CANONICAL_FILES]) {
      const key = keys.datasetCanonical(dataset.tenant_id, dataset.id, file);
      if (!CANONICAL_FILES.includes(file as never) && !(await store.stat(key))) continue;
      const got = await store.downloadToFile(key, join(dir, file));
      if (expected[file] && expected[file] !== got.sha256)
        throw new Error(`${file} of dataset ${dataset.id} does not match its manifest`);
    }
    return dir;
  }

  private follow(job: JobRow, child: ChildProcess): Promise<TrainerOutcome> {
    const { db, store } = this.opts;
    const logTail: string[] = [...job.log_tail];
    const artifacts: TrainerEvent[] = [];
    let result: TrainerEvent | null = null;
    let stderr = "";
    let pending: Promise<unknown> = Promise.resolve();
    let lastProgressWrite = 0;
    let cancelling = false;
    // Events are written in order, one at a time, so the database never sees them reordered.
    const enqueue = (fn: () => Promise<unknown>) => {
      pending = pending.then(fn).catch(() => {});
    };
    const beat = setInterval(() => {
      enqueue(async () => {
        const status = await heartbeat(db, job.id);
        if (status === "CANCELLING" && !cancelling) {
          cancelling = true;
          child.kill("SIGTERM");
        }
      });
    }, this.opts.heartbeatSeconds * 1000);
    child.stderr?.on("data", (chunk) => {
      stderr = (stderr + chunk).slice(-20_000);
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      let event: TrainerEvent;
      try {
        event = parseTrainerEvent(line);
      } catch {
        logTail.push(`[unparsed] ${line.slice(0, 500)}`);
        return;
      }
      switch (event.type) {
        case "progress": {
          const now = Date.now();
          if (now - lastProgressWrite < 1000 && event.step !== event.steps) return;
          lastProgressWrite = now;
          const progress = {
            stage: event.stage,
            epoch: event.epoch,
            epochs: event.epochs,
            fraction: event.fraction,
            imagesPerSecond: event.imagesPerSecond,
          };
          enqueue(() => updateRunning(db, job.id, { progress }));
          break;
        }
        case "metric":
          enqueue(() =>
            insertMetric(db, job.id, job.attempt, event.stage, event.epoch, event.name, event.value),
          );
          break;
        case "checkpoint": {
          const key = keys.checkpoint(job.tenant_id, job.id);
          enqueue(async () => {
            await store.putFile(key, event.path);
            await updateRunning(db, job.id, { checkpointKey: key });
          });
          break;
        }
        case "artifact":
          artifacts.push(event);
          break;
        case "log":
          logTail.push(event.message);
          logTail.splice(0, Math.max(0, logTail.length - LOG_TAIL));
          enqueue(() => updateRunning(db, job.id, { logTail: [...logTail] }));
          break;
        case "result":
          result = event;
          break;
      }
    });
    return new Promise<TrainerOutcome>((resolve) => {
      child.on("close", (code) => {
        clearInterval(beat);
        pending.then(() => resolve({ code, result, stderr, artifacts }));
      });
      child.on("error", (error) => {
        clearInterval(beat);
        stderr += String(error);
      });
    });
  }

  private async finish(job: JobRow, outcome: TrainerOutcome, workdir: string): Promise<void> {
    const { db, store } = this.opts;
    const current = await getJob(db, null, job.id);
    if (outcome.code === TrainerExit.ok && outcome.result?.type === "result") {
      if (
        !(await transition(db, job.id, "UPLOADING", "trainer finished", { metrics: outcome.result }, [
          "RUNNING",
        ]))
      ) {
        if (current?.status === "CANCELLING")
          await transition(db, job.id, "CANCELLED", "cancelled as the trainer finished");
        return;
      }
      for (const artifact of outcome.artifacts) {
        if (artifact.type !== "artifact") continue;
        const path = join(workdir, artifact.path);
        const key = keys.artifact(job.tenant_id, job.id, artifact.path);
        const stored = await store.putFile(key, path);
        if (stored.sha256 !== artifact.sha256 || stored.sizeBytes !== artifact.sizeBytes)
          throw new Error(`artifact ${artifact.path} changed between the trainer and the store`);
        await upsertArtifact(db, {
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
      await transition(db, job.id, "SUCCEEDED", "artifacts stored", {}, ["UPLOADING"]);
      return;
    }
    if (outcome.code === TrainerExit.cancelled) {
      // The trainer wrote its checkpoint before exiting; keep it so a retry resumes from there.
      const checkpoint = join(workdir, "checkpoints", "latest.pt");
      if (await stat(checkpoint).catch(() => null)) {
        const key = keys.checkpoint(job.tenant_id, job.id);
        await store.putFile(key, checkpoint);
        await updateRunning(db, job.id, { checkpointKey: key });
      }
      await transition(db, job.id, "CANCELLED", "trainer stopped after SIGTERM; checkpoint stored");
      return;
    }
    if (outcome.code === TrainerExit.invalid) {
      let message = outcome.stderr.trim().split("\n").at(-1) ?? "invalid input";
      try {
        const parsed = JSON.parse(message) as { field?: string; message?: string };
        message = parsed.field ? `${parsed.field}: ${parsed.message}` : (parsed.message ?? message);
      } catch {
        // keep the raw line
      }
      await transition(db, job.id, "FAILED", "the trainer rejected the job's inputs", {
        error: { code: "INVALID_INPUT", message },
      });
      return;
    }
    if (current?.status === "CANCELLING") {
      await transition(db, job.id, "CANCELLED", "trainer ended during cancellation");
      return;
    }
    await this.infrastructureFailure(
      job,
      `trainer exited with code ${outcome.code}: ${outcome.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  }

  /** Crashes and lost workers are retried (resuming from the last checkpoint) until max_attempts. */
  async infrastructureFailure(job: JobRow, message: string): Promise<void> {
    const { db, queue } = this.opts;
    const current = await getJob(db, null, job.id);
    if (!current) return;
    if (current.status === "CANCELLING") {
      await transition(db, job.id, "CANCELLED", `stopped during cancellation (${message})`);
      return;
    }
    if (current.attempt < current.max_attempts) {
      if (
        await transition(db, job.id, "QUEUED", `retrying after an infrastructure failure: ${message}`, {}, [
          "STARTING",
          "RUNNING",
          "UPLOADING",
        ])
      ) {
        await queue.enqueue(current.queue, { jobId: job.id, attempt: current.attempt + 1 });
      }
      return;
    }
    await transition(db, job.id, "FAILED", "gave up after repeated infrastructure failures", {
      error: { code: "INFRASTRUCTURE", message },
    });
  }
}
