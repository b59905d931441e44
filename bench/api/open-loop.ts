/**
 * An open-loop load generator: requests leave at a fixed rate whatever the server does (one every
 * 1/rate s, sent in the first timer tick at or after its time), and each one's latency counts
 * from when it was due, not when it left, so a stalled server cannot hide its stall by slowing
 * the sender ("coordinated omission"). autocannon's --overallRate sends each connection's share
 * of a second in a burst at the second's start, which measures the burst, not the rate.
 *
 * Runs in a worker thread of the bench (keep-alive connections, at most `connections` open).
 */

import { Agent, request } from "node:http";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

export interface OpenLoopOptions {
  url: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: string;
  rate: number;
  seconds: number;
  connections: number;
}

export interface OpenLoopResult {
  sent: number;
  ok: number;
  failed: number;
  /** the rate actually completed (requests answered per second of the run) */
  achieved: number;
  /** milliseconds, from each request's due time */
  p50: number;
  p99: number;
  max: number;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function generate(o: OpenLoopOptions): Promise<OpenLoopResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections });
  const target = new URL(o.url);
  const body = o.body === undefined ? undefined : Buffer.from(o.body);
  const headers = body ? { ...o.headers, "content-length": String(body.length) } : o.headers;
  const total = Math.round(o.rate * o.seconds);
  const latencies = new Float64Array(total);
  let done = 0;
  let ok = 0;
  let failed = 0;
  let sent = 0;
  const start = performance.now();
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const send = (due: number) => {
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method: o.method,
        headers,
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          latencies[done++] = performance.now() - due;
          if (res.statusCode === 200) ok++;
          else failed++;
          if (done === total) finish();
        });
      },
    );
    req.on("error", () => {
      latencies[done++] = performance.now() - due;
      failed++;
      if (done === total) finish();
    });
    req.end(body);
  };

  // Each tick sends every request due by now; ticks come about once a millisecond.
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - start) / 1000) * o.rate) + 1);
      while (sent < due) send(start + (sent++ * 1000) / o.rate);
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await finished;
  const seconds = (performance.now() - start) / 1000;
  agent.destroy();
  const sorted = latencies.slice(0, done).sort();
  return {
    sent,
    ok,
    failed,
    achieved: done / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/** Runs the generator in a worker thread and resolves with its figures. */
export function openLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  return new Promise((resolve, reject) => {
    // The thread registers tsx itself before it loads this file (--import does not reach it).
    const entry = `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
    const worker = new Worker(entry, { eval: true, workerData: options });
    worker.once("message", resolve);
    worker.once("error", reject);
  });
}

if (!isMainThread && workerData) {
  generate(workerData as OpenLoopOptions).then((result) => parentPort?.postMessage(result));
}
