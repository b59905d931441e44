import { isLive } from "../db/job-lifecycle.ts";
import type { JobRow } from "../db/jobs.ts";
import { notFound } from "../errors.ts";

/** Where job-change notifications come from (the API process's LISTEN connection). */
export interface JobUpdateSource {
  /** Calls `onChange` on every notification about job `id`; returns the unsubscribe function. */
  subscribe(id: string, onChange: () => void): () => void;
  /** Calls `onChange` with the job id of every notification (null: some may have been missed). */
  subscribeAny(onChange: (id: string | null) => void): () => void;
}

/**
 * The subscriptions of one process to one tenant's job share a feed: one listener subscription
 * and, per notification, one read of the row, whatever the number of subscribers (1,000 watchers
 * of a job cost one SELECT per change, not 1,000). A read is shared only among subscribers woken
 * by the same notification or later ones' wake-ups: a read that started before the latest
 * notification is never handed to someone that notification woke.
 */
class JobFeed {
  private generation = 0;
  private current: { generation: number; row: Promise<JobRow | null> } | undefined;
  private readonly wakers = new Set<() => void>();
  private readonly unsubscribe: () => void;

  constructor(
    listener: JobUpdateSource,
    id: string,
    private readonly load: () => Promise<JobRow | null>,
    private readonly onEmpty: () => void,
  ) {
    this.unsubscribe = listener.subscribe(id, () => {
      this.generation++;
      for (const wake of this.wakers) wake();
    });
  }

  /** The row, read after the latest notification this process received. */
  read(): Promise<JobRow | null> {
    if (this.current?.generation === this.generation) return this.current.row;
    const entry = { generation: this.generation, row: this.load() };
    this.current = entry;
    // A failed read is not shared with later callers.
    entry.row.catch(() => {
      if (this.current === entry) this.current = undefined;
    });
    return entry.row;
  }

  join(wake: () => void): () => void {
    this.wakers.add(wake);
    return () => {
      this.wakers.delete(wake);
      if (this.wakers.size === 0) {
        this.unsubscribe();
        this.onEmpty();
      }
    };
  }
}

/** Every job feed of this process (see JobFeed), by tenant and job. */
export class JobFeeds {
  private readonly feeds = new Map<string, JobFeed>();

  constructor(private readonly load: (tenantId: string, id: string) => Promise<JobRow | null>) {}

  feed(listener: JobUpdateSource, tenantId: string, id: string): JobFeed {
    const key = `${tenantId}/${id}`;
    let feed = this.feeds.get(key);
    if (!feed) {
      feed = new JobFeed(
        listener,
        id,
        () => this.load(tenantId, id),
        () => this.feeds.delete(key),
      );
      this.feeds.set(key, feed);
    }
    return feed;
  }

  /** Feeds with at least one subscriber (for tests and metrics). */
  get size(): number {
    return this.feeds.size;
  }
}

/**
 * A tenant's view of one job as it changes: the current row first, then the row re-read after each
 * notification, until a terminal status. Throws NOT_FOUND (before anything is yielded) for a job
 * the tenant cannot see, whether it does not exist or belongs to someone else.
 */
export async function watchJob(
  feeds: JobFeeds,
  listener: JobUpdateSource,
  tenantId: string,
  id: string,
): Promise<AsyncIterableIterator<JobRow>> {
  const feed = feeds.feed(listener, tenantId, id);
  const updates = new JobUpdates(() => feed.read());
  // Join before the first read: a change committed in between wakes a second read, never a miss.
  updates.unsubscribe = feed.join(() => updates.wake());
  try {
    const first = await feed.read();
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
 * A stream of job rows a subscriber reads. Hand-written iterators rather than async generators:
 * `return()` (the client unsubscribed or disconnected) must end a pending wait at once, while a
 * generator would queue it behind the wait.
 */
abstract class RowStream implements AsyncIterableIterator<JobRow> {
  unsubscribe: () => void = () => {};
  protected closed = false;
  private waiting: (() => void) | undefined;

  abstract next(): Promise<IteratorResult<JobRow>>;

  /** Ends a pending `until` so that it looks at its condition again. */
  protected wakeUp(): void {
    this.waiting?.();
  }

  /** Waits until `ready()` holds or the stream is closed. */
  protected async until(ready: () => boolean): Promise<void> {
    while (!ready() && !this.closed) await new Promise<void>((resolve) => (this.waiting = resolve));
    this.waiting = undefined;
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

/** One job's rows: the current one, then one per burst of notifications, until a terminal status. */
class JobUpdates extends RowStream {
  first: JobRow | undefined;
  private last: JobRow | undefined;
  private dirty = false;

  constructor(private readonly reread: () => Promise<JobRow | null>) {
    super();
  }

  /** A notification arrived: several before the next read collapse into that one read. */
  wake(): void {
    this.dirty = true;
    this.wakeUp();
  }

  async next(): Promise<IteratorResult<JobRow>> {
    if (this.closed) return DONE;
    if (!this.last) {
      this.last = this.first as JobRow;
      return { value: this.last, done: false };
    }
    // SUCCEEDED, FAILED, CANCELLED end the watch (a retry is followed by a new one).
    if (!isLive(this.last.status)) return this.return();
    await this.until(() => this.dirty);
    if (this.closed) return DONE;
    this.dirty = false;
    const job = await this.reread();
    if (!job || this.closed) return this.return();
    this.last = job;
    return { value: job, done: false };
  }
}

/** Jobs of other tenants this process has seen notifications for (ids never change tenant). */
const FOREIGN_IDS_KEPT = 10_000;

/**
 * Every change of a tenant's jobs, as the changed job's current row (several changes of one job
 * before the next read collapse into one row), for as long as the subscriber stays. Notifications
 * about other tenants' jobs cost one indexed read the first time and nothing after.
 */
export function watchTenantJobs(
  listener: JobUpdateSource,
  tenantId: string,
  load: (tenantId: string, id: string) => Promise<JobRow | null>,
): AsyncIterableIterator<JobRow> {
  return new TenantJobUpdates(listener, tenantId, load);
}

class TenantJobUpdates extends RowStream {
  private readonly pending = new Set<string>();
  private readonly foreign = new Set<string>();

  constructor(
    listener: JobUpdateSource,
    private readonly tenantId: string,
    private readonly load: (tenantId: string, id: string) => Promise<JobRow | null>,
  ) {
    super();
    this.unsubscribe = listener.subscribeAny((id) => {
      if (id === null || this.foreign.has(id)) return;
      this.pending.add(id);
      this.wakeUp();
    });
  }

  async next(): Promise<IteratorResult<JobRow>> {
    for (;;) {
      await this.until(() => this.pending.size > 0);
      if (this.closed) return DONE;
      const id = this.pending.values().next().value as string;
      this.pending.delete(id);
      const job = await this.load(this.tenantId, id);
      if (this.closed) return DONE;
      if (job) return { value: job, done: false };
      if (this.foreign.size >= FOREIGN_IDS_KEPT) this.foreign.clear();
      this.foreign.add(id);
    }
  }
}
