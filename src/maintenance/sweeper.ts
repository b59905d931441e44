/**
 * The sweeper: removes what crashes and deletions leave behind, on start and every few minutes, in
 * every process (each step is idempotent; concurrent sweepers only repeat each other's work):
 * - partial uploads in the local store no longer written to (a crash mid-PUT);
 * - scratch directories whose owner (a job attempt, a dataset's processing attempt) is over;
 * - a deleted dataset's objects, once its upload URLs have expired (an S3 presigned PUT cannot be
 *   revoked: bytes may land after the deletion);
 * - finished jobs' artifacts past the retention;
 * - jobs queued longer than the queue timeout on a queue no live worker serves (QUEUE_TIMEOUT);
 * - the registry rows of workers long silent (killed without unregistering).
 */
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { DataSource } from "typeorm";
import { UPLOAD_URL_SECONDS } from "../datasets/service.ts";
import { datasetById, deletedUnpurged, markPurged } from "../db/datasets.ts";
import { WORKER_STATES } from "../db/job-lifecycle.ts";
import { jobsPastRetention, markArtifactsExpired } from "../db/job-outputs.ts";
import { getJob } from "../db/jobs.ts";
import { getModel } from "../db/models.ts";
import { forgetOldDeliveries } from "../db/webhooks.ts";
import { failUnservedQueued } from "../jobs/recovery.ts";
import type { WorkerRegistry } from "../jobs/workers.ts";
import { keys } from "../storage/keys.ts";
import { LocalStore } from "../storage/local-store.ts";
import type { ObjectStore } from "../storage/object-store.ts";

export interface SweeperOptions {
  db: DataSource;
  store: ObjectStore;
  workers: WorkerRegistry;
  scratchDir: string;
  /** Training queues this deployment offers (the queue timeout applies to them). */
  trainingQueues: string[];
  /** 0: keep artifacts forever. */
  artifactRetentionDays: number;
  /** A partial upload or scratch directory untouched this long may go (if its owner is over). */
  minAgeSeconds?: number;
}

export interface SweepReport {
  temporaries: number;
  scratchDirs: number;
  purgedDatasets: number;
  expiredJobs: number;
  timedOutJobs: number;
  /** Finished webhook deliveries older than DELIVERY_RETENTION_DAYS, deleted. */
  forgottenDeliveries: number;
}

const DATASET_SCRATCH = /^(ingest|poison|sanitize)-([0-9a-f-]{36})-(\d+)$/;
/** Finished webhook deliveries are kept this long (their rows only: the events happened). */
const DELIVERY_RETENTION_DAYS = 30;
const MODEL_SCRATCH = /^model-([0-9a-f-]{36})-(\d+)$/;
const JOB_SCRATCH = /^([0-9a-f-]{36})-(\d+)$/;

export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepReport> | undefined;

  constructor(private readonly opts: SweeperOptions) {}

  /** One sweep (a sweep already running is joined, not repeated). */
  sweep(): Promise<SweepReport> {
    this.running ??= this.sweepOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  start(intervalSeconds: number, onError: (error: unknown) => void = () => {}): void {
    this.sweep().catch(onError);
    this.timer ??= setInterval(() => this.sweep().catch(onError), intervalSeconds * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  private async sweepOnce(): Promise<SweepReport> {
    const { db, store, workers } = this.opts;
    const minAge = this.opts.minAgeSeconds ?? 3600;
    const temporaries = store instanceof LocalStore ? await store.sweepTemporaries(minAge) : 0;
    const scratchDirs = await this.sweepScratch(Math.min(minAge, 10));
    let purgedDatasets = 0;
    // A minute past the URLs' lifetime: an upload that started just before expiry has landed.
    for (const d of await deletedUnpurged(db, UPLOAD_URL_SECONDS + 60)) {
      await store.deletePrefix(keys.datasetPrefix(d.tenant_id, d.id));
      await markPurged(db, d.id);
      purgedDatasets++;
    }
    let expiredJobs = 0;
    if (this.opts.artifactRetentionDays > 0)
      for (const job of await jobsPastRetention(db, this.opts.artifactRetentionDays)) {
        await store.deletePrefix(keys.jobPrefix(job.tenant_id, job.id));
        await markArtifactsExpired(db, job.id);
        expiredJobs++;
      }
    await workers.forgetLost();
    const forgottenDeliveries = await forgetOldDeliveries(db, DELIVERY_RETENTION_DAYS);
    const timedOutJobs = await failUnservedQueued(
      db,
      await workers.liveByQueue(),
      this.opts.trainingQueues,
      workers.queueTimeoutSeconds,
    );
    return { temporaries, scratchDirs, purgedDatasets, expiredJobs, timedOutJobs, forgottenDeliveries };
  }

  /** Scratch directories whose attempt is over (names this code does not know are left alone). */
  private async sweepScratch(minAgeSeconds: number): Promise<number> {
    const { db, scratchDir } = this.opts;
    let removed = 0;
    const names = await readdir(scratchDir).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(scratchDir, name);
      const st = await stat(path).catch(() => null);
      if (!st?.isDirectory() || Date.now() - st.mtimeMs < minAgeSeconds * 1000) continue;
      const dataset = DATASET_SCRATCH.exec(name);
      const model = dataset ? null : MODEL_SCRATCH.exec(name);
      const job = dataset || model ? null : JOB_SCRATCH.exec(name);
      let live: boolean;
      if (dataset) {
        const row = await datasetById(db, dataset[2] as string);
        live = row?.status === "VALIDATING" && row.processing_attempt === Number(dataset[3]);
      } else if (model) {
        const row = await getModel(db, null, model[1] as string);
        live = row?.status === "VALIDATING" && row.processing_attempt === Number(model[2]);
      } else if (job) {
        const row = await getJob(db, null, job[1] as string);
        live = !!row && WORKER_STATES.includes(row.status) && row.attempt === Number(job[2]);
      } else continue;
      if (live) continue;
      await rm(path, { recursive: true, force: true });
      removed++;
    }
    return removed;
  }
}
