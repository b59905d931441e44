/**
 * Dataset work on the queue: a worker claims a VALIDATING dataset for one attempt (the `ingest`
 * queue for uploads, `poison` for poisoning and sanitizing runs), keeps a heartbeat while it works, and leaves it
 * READY or FAILED. The rules are training jobs' own: a worker that dies mid-way stops heartbeating,
 * the reaper sends the dataset back to the queue as the next attempt, and after MAX_ATTEMPTS it
 * fails with WORKER_LOST. A user's bad upload fails once (upload-ingest.ts, poison-run.ts).
 */
import {
  claimDataset,
  type DatasetRow,
  datasetById,
  datasetHeartbeat,
  setDatasetStatus,
  staleDatasets,
} from "../db/datasets.ts";
import type { DatasetMessage, JobQueue } from "../queue/job-queue.ts";
import { warmDecodePool } from "./images/decode-pool.ts";
import { type PoisonRecord, runPoison } from "./poison-run.ts";
import { runSanitize } from "./sanitize-run.ts";
import { type DatasetProcessing, ingestUpload } from "./upload-ingest.ts";

export const MAX_ATTEMPTS = 3;

/** The queue a dataset's processing runs on: `poison` for every run of the trainer's dataset commands. */
export function processingQueue(dataset: Pick<DatasetRow, "poison" | "derived_from">): "ingest" | "poison" {
  return dataset.poison || dataset.derived_from ? "poison" : "ingest";
}

export class DatasetProcessor {
  constructor(
    private readonly deps: DatasetProcessing,
    private readonly queue: JobQueue,
    private readonly heartbeatSeconds: number,
  ) {}

  /** Starts the image-decoding threads ahead of the first archive upload. */
  warm(): Promise<void> {
    return warmDecodePool();
  }

  /** Run one queue message: nothing when the dataset is not waiting for this attempt. */
  async handle(message: DatasetMessage, worker: string): Promise<void> {
    const dataset = await claimDataset(this.deps.db, message.datasetId, message.attempt, worker);
    if (!dataset) return;
    const beat = setInterval(() => {
      datasetHeartbeat(this.deps.db, dataset.id, message.attempt).catch(() => {});
    }, this.heartbeatSeconds * 1000);
    try {
      if (dataset.poison) await this.poison(dataset);
      else if (dataset.derived_from) await this.sanitize(dataset);
      else await ingestUpload(this.deps, dataset);
    } finally {
      clearInterval(beat);
    }
  }

  private async sanitize(sanitized: DatasetRow): Promise<void> {
    const source = await datasetById(this.deps.db, sanitized.derived_from?.datasetId as string);
    if (!source) {
      await this.fail(sanitized, "SOURCE_GONE: the training set this sanitizing run reads no longer exists");
      return;
    }
    await runSanitize(this.deps, source, sanitized);
  }

  private async poison(poisoned: DatasetRow): Promise<void> {
    const { db } = this.deps;
    const source = poisoned.source_dataset_id ? await datasetById(db, poisoned.source_dataset_id) : null;
    const asr = poisoned.asr_dataset_id ? await datasetById(db, poisoned.asr_dataset_id) : null;
    const test = asr?.source_dataset_id ? await datasetById(db, asr.source_dataset_id) : null;
    if (!source || (asr && !test)) {
      await this.fail(poisoned, "SOURCE_GONE: the clean dataset this poisoning run reads no longer exists");
      return;
    }
    await runPoison(this.deps, {
      source,
      test,
      poisoned,
      asr,
      record: poisoned.poison as unknown as PoisonRecord,
    });
  }

  /**
   * Datasets nobody works on any more go back to the queue as their next attempt (a duplicate of a
   * message still waiting is dropped by the queue); after MAX_ATTEMPTS they fail. Any worker may
   * run this. Returns how many datasets it moved.
   */
  async reapStale(staleAfterSeconds: number): Promise<number> {
    let moved = 0;
    for (const dataset of await staleDatasets(this.deps.db, staleAfterSeconds)) {
      if (dataset.processing_attempt >= MAX_ATTEMPTS) {
        const worker = dataset.processing_worker ?? "?";
        await this.fail(
          dataset,
          `WORKER_LOST: worker ${worker} stopped sending heartbeats; no attempts left`,
        );
      } else {
        const attempt = dataset.processing_attempt + 1;
        await this.queue.enqueue(processingQueue(dataset), { datasetId: dataset.id, attempt });
      }
      moved++;
    }
    return moved;
  }

  private async fail(dataset: DatasetRow, reason: string): Promise<void> {
    for (const id of [dataset.id, dataset.asr_dataset_id])
      if (id) await setDatasetStatus(this.deps.db, id, ["VALIDATING"], "FAILED", reason);
  }
}
