/**
 * Shared job feeds (src/jobs/watch.ts): every subscription of a process to one job shares one
 * listener subscription and one read per notification, and a read begun before a notification
 * is never what that notification's subscribers get.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobRow } from "../../src/db/jobs.ts";
import { JobFeeds, type JobUpdateSource, watchJob, watchTenantJobs } from "../../src/jobs/watch.ts";

/** A listener the test notifies by hand. */
class FakeListener implements JobUpdateSource {
  readonly subscribers = new Map<string, Set<() => void>>();
  subscribe(id: string, onChange: () => void): () => void {
    const set = this.subscribers.get(id) ?? new Set();
    set.add(onChange);
    this.subscribers.set(id, set);
    return () => set.delete(onChange);
  }
  readonly anySubscribers = new Set<(id: string | null) => void>();
  subscribeAny(onChange: (id: string | null) => void): () => void {
    this.anySubscribers.add(onChange);
    return () => this.anySubscribers.delete(onChange);
  }
  notify(id: string): void {
    for (const wake of this.subscribers.get(id) ?? []) wake();
    for (const wake of this.anySubscribers) wake(id);
  }
  count(id: string): number {
    return this.subscribers.get(id)?.size ?? 0;
  }
}

const row = (version: number) =>
  ({ id: "j", status: "RUNNING", progress: { epoch: version } }) as unknown as JobRow;
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("shared job feeds", () => {
  it("50 watchers of one job: one listener subscription, one read per notification", async () => {
    let reads = 0;
    const feeds = new JobFeeds(async () => row(++reads));
    const listener = new FakeListener();
    const watchers = await Promise.all(Array.from({ length: 50 }, () => watchJob(feeds, listener, "t", "j")));
    assert.equal(listener.count("j"), 1);
    assert.equal(reads, 1, "the first reads are shared");
    for (const w of watchers) assert.deepEqual((await w.next()).value, row(1));
    const next = watchers.map((w) => w.next());
    listener.notify("j");
    for (const r of await Promise.all(next)) assert.deepEqual(r.value, row(2));
    assert.equal(reads, 2, "one read for the notification, not 50");
    for (const w of watchers) await w.return?.();
    assert.equal(listener.count("j"), 0, "the last watcher leaving unsubscribes");
    assert.equal(feeds.size, 0);
  });

  it("a read begun before a notification is not handed to those it wakes", async () => {
    const pending: Array<(r: JobRow) => void> = [];
    let reads = 0;
    const feeds = new JobFeeds(() => {
      reads++;
      return new Promise<JobRow>((resolve) => pending.push(resolve));
    });
    const answer = (r: JobRow) => (pending.shift() as (r: JobRow) => void)(r);
    const listener = new FakeListener();
    const starting = watchJob(feeds, listener, "t", "j");
    await tick();
    answer(row(1));
    const watcher = await starting;
    await watcher.next(); // the first row
    const first = watcher.next();
    listener.notify("j"); // read 2 starts
    await tick();
    assert.equal(reads, 2);
    const joining = watchJob(feeds, listener, "t", "j"); // no newer change: shares read 2
    await tick();
    assert.equal(reads, 2, "a watcher joining without a newer notification shares the read in flight");
    listener.notify("j"); // a newer change, which read 2 may predate
    answer(row(2));
    assert.deepEqual((await first).value, row(2));
    const late = await joining;
    assert.deepEqual((await late.next()).value, row(2));
    const second = watcher.next(); // woken by the newer notification: not read 2 again
    await tick();
    assert.equal(reads, 3);
    answer(row(3));
    assert.deepEqual((await second).value, row(3));
    await watcher.return?.();
    await late.return?.();
  });

  it("different tenants never share a feed", async () => {
    const seen: string[] = [];
    const feeds = new JobFeeds(async (tenantId) => {
      seen.push(tenantId);
      return tenantId === "a" ? row(1) : null;
    });
    const listener = new FakeListener();
    await watchJob(feeds, listener, "a", "j");
    await assert.rejects(watchJob(feeds, listener, "b", "j"), /does not exist/);
    assert.deepEqual(seen, ["a", "b"]);
  });
});

describe("a tenant's feed of all its jobs (jobsUpdated)", () => {
  it("yields the tenant's changed jobs, one read per burst, and reads another tenant's job once", async () => {
    const reads: string[] = [];
    const mine = new Set(["a", "b"]);
    const listener = new FakeListener();
    const updates = watchTenantJobs(listener, "t", async (_tenant, id) => {
      reads.push(id);
      return mine.has(id) ? ({ id, status: "RUNNING" } as unknown as JobRow) : null;
    });
    const first = updates.next();
    for (const id of ["x", "a", "a", "a", "b", "x"]) listener.notify(id);
    // x (foreign) is read and skipped; a's three changes are one read; then b.
    assert.equal((await first).value?.id, "a");
    assert.equal((await updates.next()).value?.id, "b");
    assert.deepEqual(reads, ["x", "a", "b"]);
    const later = updates.next();
    listener.notify("x"); // known foreign: not even read
    listener.notify("a");
    assert.equal((await later).value?.id, "a");
    assert.deepEqual(reads, ["x", "a", "b", "a"]);
    const pending = updates.next();
    await updates.return?.();
    assert.deepEqual(await pending, { value: undefined, done: true }, "leaving ends a pending wait at once");
    assert.equal(listener.anySubscribers.size, 0);
  });
});
