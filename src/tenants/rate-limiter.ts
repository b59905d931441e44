import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { DataSource } from "typeorm";
import { pruneWindowCounts, syncWindowCounts, type WindowCount } from "../db/rate-limits.ts";

export type RateVerdict = { ok: true } | { ok: false; retryAfterSeconds: number; limit: number };

interface TenantWindow {
  windowStart: number;
  /** Requests this replica admitted in the window. */
  local: number;
  /** What the last sync wrote for this replica (unchanged counts are not written again). */
  synced: number;
  /** The other replicas' requests in the window, as of the last sync. */
  others: number;
}

/**
 * A per-tenant fixed-window limit shared by every API replica without a database write per request:
 * `consume` decides from memory (microseconds); once a second each replica writes its own counts
 * for the current window and reads the others' (syncWindowCounts). Between syncs the replicas can
 * together admit up to one second's worth of requests beyond the limit: the price of no SQL per
 * request, and a bounded one.
 */
export class RateLimiter {
  readonly replica = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  private readonly windows = new Map<string, TenantWindow>();
  /** Every tenant's requests on the other replicas in `remoteWindow`, as of the last sync. */
  private remote = new Map<string, number>();
  private remoteWindow = -1;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly db: DataSource,
    private readonly limit: number,
    private readonly windowSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  private windowStart(): number {
    return Math.floor(this.now() / 1000 / this.windowSeconds) * this.windowSeconds;
  }

  /** Counts one request of `tenantId`, or refuses it with the seconds until its window ends. */
  consume(tenantId: string): RateVerdict {
    if (this.limit <= 0) return { ok: true };
    const start = this.windowStart();
    let w = this.windows.get(tenantId);
    if (!w || w.windowStart !== start) {
      const others = this.remoteWindow === start ? (this.remote.get(tenantId) ?? 0) : 0;
      w = { windowStart: start, local: 0, synced: 0, others };
      this.windows.set(tenantId, w);
    }
    if (w.local + w.others >= this.limit) {
      const retryAfterSeconds = Math.max(1, Math.ceil(start + this.windowSeconds - this.now() / 1000));
      return { ok: false, retryAfterSeconds, limit: this.limit };
    }
    w.local++;
    return { ok: true };
  }

  /** Writes this replica's changed counts and reads the other replicas' (once a second). */
  sync(): Promise<void> {
    this.syncing ??= this.syncOnce().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    const start = this.windowStart();
    const changed: WindowCount[] = [];
    for (const [tenantId, w] of this.windows) {
      if (w.windowStart !== start) this.windows.delete(tenantId);
      else if (w.local !== w.synced) changed.push({ tenantId, windowStart: start, count: w.local });
    }
    const others = await syncWindowCounts(this.db, this.replica, start, changed);
    for (const c of changed) {
      const w = this.windows.get(c.tenantId);
      if (w && w.windowStart === start) w.synced = Math.max(w.synced, c.count);
    }
    for (const [tenantId, w] of this.windows)
      if (w.windowStart === start) w.others = others.get(tenantId) ?? 0;
    this.remote = others;
    this.remoteWindow = start;
    // Old windows are dead weight; any replica may drop them, now and then.
    if (this.now() / 1000 - start < 1) await pruneWindowCounts(this.db, start - this.windowSeconds);
  }

  start(intervalMs = 1000): void {
    if (this.limit <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      this.sync().catch(() => {});
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.syncing?.catch(() => {});
  }
}
