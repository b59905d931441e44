import type { DataSource } from "typeorm";
import { isLive } from "../db/job-lifecycle.ts";
import { getJob, type JobRow } from "../db/jobs.ts";
import { notFound } from "../errors.ts";

/** Where job-change notifications come from (the API process's LISTEN connection). */
export interface JobUpdateSource {
  /** Calls `onChange` on every notification about job `id`; returns the unsubscribe function. */
  subscribe(id: string, onChange: () => void): () => void;
}

/**
 * A tenant's view of one job as it changes: the current row first, then the row re-read after each
 * notification, until a terminal status. Throws NOT_FOUND (before anything is yielded) for a job
 * the tenant cannot see, whether it does not exist or belongs to someone else.
 */
export async function watchJob(
  db: DataSource,
  listener: JobUpdateSource,
  tenantId: string,
  id: string,
): Promise<AsyncIterableIterator<JobRow>> {
  const updates = new JobUpdates(() => getJob(db, tenantId, id));
  // Subscribe before the first read: a change committed in between wakes a second read, never a miss.
  updates.unsubscribe = listener.subscribe(id, () => updates.wake());
  try {
    const first = await getJob(db, tenantId, id);
    if (!first) throw notFound("job", id);
    updates.first = first;
    return updates;
  } catch (error) {
    await updates.return();
    throw error;
  }
}

const DONE: IteratorReturnResult<undefined> = { value: undefined, done: true };

/**
 * A hand-written iterator rather than an async generator: `return()` (the client unsubscribed or
 * disconnected) must end a pending wait at once, while a generator would queue it behind the wait.
 */
class JobUpdates implements AsyncIterableIterator<JobRow> {
  first: JobRow | undefined;
  unsubscribe: () => void = () => {};
  private last: JobRow | undefined;
  private dirty = false;
  private closed = false;
  private waiting: (() => void) | undefined;

  constructor(private readonly reread: () => Promise<JobRow | null>) {}

  /** A notification arrived: several before the next read collapse into that one read. */
  wake(): void {
    this.dirty = true;
    this.waiting?.();
  }

  async next(): Promise<IteratorResult<JobRow>> {
    if (this.closed) return DONE;
    if (!this.last) {
      this.last = this.first as JobRow;
      return { value: this.last, done: false };
    }
    // SUCCEEDED, FAILED, CANCELLED end the watch (a retry is followed by a new one).
    if (!isLive(this.last.status)) return this.return();
    while (!this.dirty && !this.closed) await new Promise<void>((resolve) => (this.waiting = resolve));
    this.waiting = undefined;
    if (this.closed) return DONE;
    this.dirty = false;
    const job = await this.reread();
    if (!job || this.closed) return this.return();
    this.last = job;
    return { value: job, done: false };
  }

  async return(): Promise<IteratorReturnResult<undefined>> {
    if (!this.closed) {
      this.closed = true;
      this.unsubscribe();
      this.waiting?.();
    }
    return DONE;
  }

  async throw(error?: unknown): Promise<IteratorResult<JobRow>> {
    await this.return();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
