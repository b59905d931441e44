/**
 * The retry policy for infrastructure failures, in one place: a crashed trainer, a failed upload
 * or a worker that stopped heartbeating sends the job back to the queue for its next attempt
 * (which resumes from the last stored checkpoint) until `max_attempts`; a job being cancelled
 * ends CANCELLED instead. A user's bad input is never retried (execution.ts fails it once).
 */
import type { DataSource } from "typeorm";
import type { JobStatus } from "../db/job-lifecycle.ts";
import { getJob, type JobRow, queuedLongerThan, staleJobs, transition } from "../db/jobs.ts";
import type { JobQueue } from "../queue/job-queue.ts";

/** States a worker owns; a failure in any of them may re-queue the job. */
const RETRYABLE_FROM: JobStatus[] = ["STARTING", "RUNNING", "UPLOADING"];

/** Retry (or give up on, or finish cancelling) a job whose attempt failed for infrastructure reasons. */
export async function retryOrFail(
  db: DataSource,
  queue: JobQueue,
  jobId: string,
  message: string,
): Promise<void> {
  const current = await getJob(db, null, jobId);
  if (!current) return;
  if (current.status === "CANCELLING") {
    await transition(db, jobId, "CANCELLED", `stopped during cancellation (${message})`);
    return;
  }
  if (current.attempt < current.max_attempts) {
    const requeued = await transition(
      db,
      jobId,
      "QUEUED",
      `retrying after an infrastructure failure: ${message}`,
      {},
      RETRYABLE_FROM,
    );
    if (requeued) await queue.enqueue(current.queue, { jobId, attempt: current.attempt + 1 });
    return;
  }
  await transition(db, jobId, "FAILED", "gave up after repeated infrastructure failures", {
    error: { code: "INFRASTRUCTURE", message },
  });
}

/**
 * Jobs whose worker stopped sending heartbeats (process killed, machine lost) are put back on the
 * queue for another attempt; a job already being cancelled is marked CANCELLED. Any worker may
 * run this: the status transition is the lock. Returns how many jobs it moved.
 */
export async function reapStaleJobs(
  db: DataSource,
  queue: JobQueue,
  staleAfterSeconds: number,
): Promise<number> {
  let reaped = 0;
  for (const job of await staleJobs(db, staleAfterSeconds)) {
    if (await reap(db, queue, job)) reaped++;
  }
  return reaped;
}

async function reap(db: DataSource, queue: JobQueue, job: JobRow): Promise<boolean> {
  const reason = `worker ${job.worker ?? "?"} stopped sending heartbeats`;
  if (job.status === "CANCELLING")
    return (await transition(db, job.id, "CANCELLED", reason, {}, ["CANCELLING"])) !== null;
  if (job.attempt >= job.max_attempts) {
    const failed = await transition(
      db,
      job.id,
      "FAILED",
      reason,
      { error: { code: "INFRASTRUCTURE", message: `${reason}; no attempts left` } },
      [job.status],
    );
    return failed !== null;
  }
  const requeued = await transition(
    db,
    job.id,
    "QUEUED",
    `${reason}; retrying from the last checkpoint`,
    {},
    [job.status],
  );
  if (requeued) await queue.enqueue(job.queue, { jobId: job.id, attempt: job.attempt + 1 });
  return requeued !== null;
}

/**
 * Jobs QUEUED longer than `timeoutSeconds` on a queue that no live worker serves fail with
 * QUEUE_TIMEOUT (an autoscaler that never started a worker, a GPU pool that is gone). A queue with
 * workers keeps its jobs however long they wait: they are only behind others.
 */
export async function failUnservedQueued(
  db: DataSource,
  liveByQueue: Map<string, number>,
  queues: string[],
  timeoutSeconds: number,
): Promise<number> {
  const unserved = queues.filter((q) => (liveByQueue.get(q) ?? 0) === 0);
  let failed = 0;
  for (const job of await queuedLongerThan(db, unserved, timeoutSeconds)) {
    const message = `no worker served the ${job.queue} queue within ${timeoutSeconds} s`;
    const done = await transition(
      db,
      job.id,
      "FAILED",
      message,
      { error: { code: "QUEUE_TIMEOUT", message } },
      ["QUEUED"],
    );
    if (done) failed++;
  }
  return failed;
}
