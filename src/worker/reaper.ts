import type { DataSource } from "typeorm";
import { staleJobs, transition } from "../db/jobs.ts";
import type { JobQueue } from "../queue/job-queue.ts";

/**
 * Jobs whose worker stopped sending heartbeats (process killed, machine lost) are put back on the
 * queue for another attempt, which resumes from the last stored checkpoint; a job already being
 * cancelled is marked CANCELLED. Any worker may run this: the status transition is the lock.
 */
export async function reapStaleJobs(
  db: DataSource,
  queue: JobQueue,
  staleAfterSeconds: number,
): Promise<number> {
  let reaped = 0;
  for (const job of await staleJobs(db, staleAfterSeconds)) {
    const reason = `worker ${job.worker ?? "?"} stopped sending heartbeats`;
    if (job.status === "CANCELLING") {
      if (await transition(db, job.id, "CANCELLED", reason, {}, ["CANCELLING"])) reaped++;
      continue;
    }
    if (job.attempt >= job.max_attempts) {
      if (
        await transition(
          db,
          job.id,
          "FAILED",
          reason,
          { error: { code: "INFRASTRUCTURE", message: `${reason}; no attempts left` } },
          [job.status],
        )
      )
        reaped++;
      continue;
    }
    if (
      await transition(db, job.id, "QUEUED", `${reason}; retrying from the last checkpoint`, {}, [job.status])
    ) {
      await queue.enqueue(job.queue, { jobId: job.id, attempt: job.attempt + 1 });
      reaped++;
    }
  }
  return reaped;
}
