/**
 * Subscription fan-out: --subscribers `jobUpdated` subscriptions on one job, half on each of two
 * API processes sharing one PostgreSQL (as two replicas behind a load balancer), one WebSocket
 * each. The bench then changes the job --updates times (a progress write, as a worker's trainer
 * events make it; the NOTIFY rides in that statement) and times each delivery from just before
 * the write to the subscriber's receipt.
 *
 *   node --import tsx bench/api/fanout.ts [--subscribers 1000] [--updates 20] [--interval-ms 500]
 *
 * The second API is a child process (its own event loop, as a replica would have); the
 * subscribers run in a worker thread of this process, apart from the first API's event loop.
 * Times are wall-clock milliseconds (performance.timeOrigin + now()) on one machine.
 * Not part of `make test`.
 */

import { fork } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { updateRunning } from "../../src/db/jobs.ts";
import { removeDataDir } from "../../tests/helpers/app.ts";
import { seedJobs, startBenchApi } from "./setup.ts";

const SUBSCRIPTION = "subscription($id: ID!) { jobUpdated(id: $id) { id progress { epoch } } }";
const now = () => performance.timeOrigin + performance.now();

interface SubscriberSetup {
  urls: string[];
  key: string;
  jobId: string;
  subscribers: number;
}

/** Worker thread: opens the subscriptions, then reports (epoch, receipt time) for every delivery. */
async function subscribers(setup: SubscriberSetup): Promise<void> {
  const port = parentPort as NonNullable<typeof parentPort>;
  let ready = 0;
  const received: Array<[number, number]> = [];
  for (let i = 0; i < setup.subscribers; i++) {
    const url = setup.urls[i % setup.urls.length] as string;
    const client = createClient({
      url: `${url.replace(/^http/, "ws")}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${setup.key}` },
      retryAttempts: 0,
      lazy: false,
    });
    let first = true;
    client.subscribe<{ jobUpdated: { progress: { epoch: number } | null } }>(
      { query: SUBSCRIPTION, variables: { id: setup.jobId } },
      {
        next: (result) => {
          if (first) {
            first = false; // the job as it is when subscribing
            if (++ready === setup.subscribers) port.postMessage({ ready });
            return;
          }
          received.push([result.data?.jobUpdated.progress?.epoch ?? -1, now()]);
        },
        error: (error) => port.postMessage({ error: String(error) }),
        complete: () => {},
      },
    );
  }
  port.on("message", (message: { collect?: boolean }) => {
    if (message.collect) port.postMessage({ received: received.splice(0) });
  });
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** The second API process: `--replica DATABASE_URL DIR`; prints its URL. */
async function replica(databaseUrl: string, dir: string): Promise<void> {
  const app = await startBenchApi(dir, { DATABASE_URL: databaseUrl });
  process.send?.({ url: app.url });
  process.on("message", async () => {
    await app.stop();
    process.exit(0);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      subscribers: { type: "string", default: "1000" },
      updates: { type: "string", default: "20" },
      "interval-ms": { type: "string", default: "500" },
      replica: { type: "string" },
      dir: { type: "string" },
    },
  });
  if (values.replica) return replica(values.replica, values.dir as string);
  const count = Number(values.subscribers);
  const updates = Number(values.updates);
  const dir = mkdtempSync(join(tmpdir(), "trapdoor-bench-fanout-"));
  const app = await startBenchApi(dir);
  const second = fork(fileURLToPath(import.meta.url), ["--replica", app.databaseUrl, "--dir", dir], {
    execArgv: process.execArgv,
  });
  try {
    const secondUrl = await new Promise<string>((resolve) =>
      second.once("message", (m: { url: string }) => resolve(m.url)),
    );
    const { jobs } = await seedJobs(app, 1);
    const jobId = jobs[0] as string;
    const entry = `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
    const setup: SubscriberSetup = {
      urls: [app.url as string, secondUrl],
      key: app.firstApiKey as string,
      jobId,
      subscribers: count,
    };
    const worker = new Worker(entry, { eval: true, workerData: setup });
    const inbox: Array<(m: Record<string, unknown>) => void> = [];
    worker.on("message", (m: Record<string, unknown>) => {
      if (m.error) throw new Error(`a subscription failed: ${m.error}`);
      inbox.shift()?.(m);
    });
    const nextMessage = () => new Promise<Record<string, unknown>>((resolve) => inbox.push(resolve));
    process.stderr.write(`opening ${count} subscriptions on two API processes...\n`);
    await nextMessage(); // all subscribed
    const sentAt: number[] = [];
    for (let epoch = 0; epoch < updates; epoch++) {
      sentAt[epoch] = now();
      await updateRunning(app.db, jobId, {
        progress: {
          stage: "stage1",
          epoch,
          epochs: updates,
          fraction: epoch / updates,
          imagesPerSecond: 1000,
        },
      });
      await new Promise((resolve) => setTimeout(resolve, Number(values["interval-ms"])));
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    worker.postMessage({ collect: true });
    const { received } = (await nextMessage()) as { received: Array<[number, number]> };
    const latencies = received
      .filter(([epoch]) => epoch >= 0 && epoch < updates)
      .map(([epoch, at]) => at - (sentAt[epoch] as number))
      .sort((a, b) => a - b);
    const expected = count * updates;
    process.stdout.write(
      [
        `${count} subscribers on one job across two API processes; ${updates} updates ${values["interval-ms"]} ms apart.`,
        "",
        "| deliveries (expected) | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        `| ${latencies.length} (${expected}) | ${percentile(latencies, 0.5).toFixed(1)} | ${percentile(latencies, 0.99).toFixed(1)} | ${(latencies.at(-1) ?? Number.NaN).toFixed(1)} |`,
        "",
      ].join("\n"),
    );
    await worker.terminate();
  } finally {
    second.send("stop");
    await new Promise((resolve) => second.once("exit", resolve));
    await app.stop();
    removeDataDir(dir); // and the embedded cluster, where it was kept elsewhere (as root)
  }
}

if (isMainThread) await main();
else await subscribers(workerData as SubscriberSetup);
