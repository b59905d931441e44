import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { mapOrdered } from "../../src/datasets/map-ordered.ts";

async function* numbers(n: number, log: string[], failAt = -1): AsyncGenerator<number> {
  try {
    for (let i = 0; i < n; i++) {
      if (i === failAt) throw new Error(`read ${i} failed`);
      log.push(`read ${i}`);
      yield i;
    }
  } finally {
    log.push("source closed");
  }
}

describe("mapOrdered", () => {
  test("keeps input order with work finishing out of order, never more than `limit` held", async () => {
    let running = 0;
    let most = 0;
    const out: number[] = [];
    const work = async (i: number) => {
      running++;
      most = Math.max(most, running);
      await sleep((7 - (i % 7)) * 2);
      running--;
      return i * 10;
    };
    for await (const r of mapOrdered(numbers(40, []), 4, work)) out.push(r);
    assert.deepEqual(
      out,
      Array.from({ length: 40 }, (_, i) => i * 10),
    );
    assert.ok(most <= 4 && most >= 2, `at most 4 in flight, saw ${most}`);
  });

  test("reads ahead while the consumer is busy", async () => {
    const log: string[] = [];
    const results = mapOrdered(numbers(10, log), 3, async (i) => i);
    assert.equal((await results.next()).value, 0);
    await sleep(20); // the consumer "writes" the first result; the reader goes on meanwhile
    assert.ok(log.includes("read 3"), `read ahead up to the limit: ${log.join(", ")}`);
    assert.ok(!log.includes("read 5"), `but not past it: ${log.join(", ")}`);
    await results.return(undefined);
    assert.ok(log.includes("source closed"));
  });

  test("an early exit closes the source and waits for running work", async () => {
    const log: string[] = [];
    let finished = 0;
    for await (const r of mapOrdered(numbers(100, log), 4, async (i) => {
      await sleep(5);
      finished++;
      return i;
    })) {
      if (r === 2) break;
    }
    assert.ok(log.includes("source closed"));
    const read = log.filter((l) => l.startsWith("read")).length;
    assert.equal(finished, read, "every started task finished before the loop returned");
  });

  test("a work failure surfaces in order; a read failure after the results before it", async () => {
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const r of mapOrdered(numbers(10, []), 4, async (i) => {
          if (i === 5) throw new Error("work 5 failed");
          return i;
        }))
          seen.push(r);
      })(),
      /work 5 failed/,
    );
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
    const before: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const r of mapOrdered(numbers(10, [], 6), 4, async (i) => i)) before.push(r);
      })(),
      /read 6 failed/,
    );
    assert.deepEqual(before, [0, 1, 2, 3, 4, 5]);
  });
});
