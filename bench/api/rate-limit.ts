/**
 * What the per-tenant rate limiter costs a request: `RateLimiter.consume` timed call by call
 * (1,000 tenants, 2,000,000 calls, none refused), and how many SQL statements it sends (one sync a
 * second, whatever the request rate). Its end-to-end cost is the difference between
 * `bench/api/latency.ts --rate-limit 0` and the default, run one after the other.
 *
 *   node --import tsx bench/api/rate-limit.ts
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { DataSource } from "typeorm";
import { RateLimiter } from "../../src/tenants/rate-limiter.ts";

const CALLS = 2_000_000;
const tenants = Array.from({ length: 1000 }, () => randomUUID());
let statements = 0;
// A stand-in for the database that counts statements: the limiter's only contact with it is sync().
const db = {
  createQueryRunner: () => ({
    query: async () => {
      statements++;
      return { records: [] };
    },
    release: async () => {},
  }),
} as unknown as DataSource;

const limiter = new RateLimiter(db, 1_000_000_000, 60);
const samples = new Float64Array(CALLS);
const started = performance.now();
for (let i = 0; i < CALLS; i++) {
  const t0 = performance.now();
  limiter.consume(tenants[i % tenants.length] as string);
  samples[i] = performance.now() - t0;
  if (i % 200_000 === 0) await limiter.sync();
}
const seconds = (performance.now() - started) / 1000;
samples.sort();
const q = (p: number) => (samples[Math.floor(p * (CALLS - 1))] as number) * 1000;
console.log(`| consume() calls | p50 (µs) | p99 (µs) | max (µs) | calls/s | SQL statements (10 syncs) |
|---|---|---|---|---|---|
| ${CALLS} | ${q(0.5).toFixed(2)} | ${q(0.99).toFixed(2)} | ${q(1).toFixed(1)} | ${Math.round(CALLS / seconds)} | ${statements} |`);
