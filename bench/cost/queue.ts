/**
 * Queue throughput: tiny jobs per minute with 1, 2 and 4 worker processes. One API (embedded
 * PostgreSQL, local object store) and N `trapdoor worker` processes on the same data directory;
 * --jobs NO_DEFENSE jobs of one epoch on 200 synthetic images are launched at once and timed from
 * the first launch to the last SUCCEEDED. Such a job is mostly the trainer's start (Python and
 * torch imports) and the worker's bookkeeping: this measures the queue and the per-job overhead,
 * not training.
 *
 *   TRAPDOOR_PYTHON=/usr/bin/python3 node --import tsx bench/cost/queue.ts [--workers 1,2,4] [--jobs 12]
 *
 * Prints a table and writes queue.json into --out (bench/cost/plot.py draws it).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  datasetIds,
  gql,
  launchJob,
  makeDatasets,
  python,
  removeDataDir,
  uploadJobDatasets,
  waitFor,
} from "../../tests/helpers/app.ts";
import { startBenchApi } from "../api/setup.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

function startWorker(env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "worker"], {
    cwd: repo,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk) => {
      out += chunk;
      if (/serving queues/.test(out)) resolve(child);
    });
    child.stderr?.on("data", (chunk) => {
      out += chunk;
    });
    child.once("exit", (code) => reject(new Error(`worker exited ${code}: ${out}`)));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workers: { type: "string", default: "1,2,4" },
      jobs: { type: "string", default: "12" },
      out: { type: "string", default: join(repo, "bench", "out", "cost") },
    },
  });
  const dir = mkdtempSync(join(tmpdir(), "trapdoor-bench-queue-"));
  const app = await startBenchApi(dir, { TRAPDOOR_AUTOSCALED_QUEUES: "cpu" });
  const url = app.url as string;
  const key = app.firstApiKey as string;
  const workerEnv = {
    ...process.env,
    DATABASE_URL: app.databaseUrl,
    TRAPDOOR_DATA_DIR: dir,
    TRAPDOOR_PYTHON: python,
    TRAPDOOR_POLL_SECONDS: "1",
    TRAPDOOR_AUTO_MIGRATE: "false",
  };
  const rows: { workers: number; jobs: number; seconds: number; jobsPerMinute: number }[] = [];
  try {
    const data = makeDatasets(join(dir, "data"), { nTrain: 200, nHoldout: 40, nTest: 40 });
    let ids: Awaited<ReturnType<typeof uploadJobDatasets>> | undefined;
    let round = 0;
    for (const count of values.workers.split(",").map(Number)) {
      const workers = await Promise.all(Array.from({ length: count }, () => startWorker(workerEnv)));
      ids ??= await uploadJobDatasets(url, key, data); // the first round's workers ingest them
      const jobs = Number(values.jobs);
      const started = performance.now();
      const launched = await Promise.all(
        Array.from({ length: jobs }, (_, i) =>
          launchJob(url, key, {
            method: "NO_DEFENSE",
            architecture: "small-cnn",
            ...datasetIds(ids as NonNullable<typeof ids>),
            hyperparameters: { epochs: 1, batchSize: 64, evalEvery: 0 },
            seed: i,
            idempotencyKey: `queue-${round}-${i}`,
          }),
        ),
      );
      await waitFor(
        `${jobs} jobs on ${count} worker(s)`,
        async () => {
          const res = await gql<{ jobs: { edges: { node: { id: string; status: string } }[] } }>(
            url,
            key,
            "{ jobs(first: 100) { edges { node { id status } } } }",
          );
          const mine = res.data?.jobs.edges.filter((e) => launched.includes(e.node.id)) ?? [];
          const failed = mine.find((e) => e.node.status === "FAILED");
          if (failed) throw new Error(`job ${failed.node.id} FAILED`);
          return mine.length === jobs && mine.every((e) => e.node.status === "SUCCEEDED");
        },
        600_000,
        200,
      );
      const seconds = (performance.now() - started) / 1000;
      rows.push({ workers: count, jobs, seconds, jobsPerMinute: (jobs / seconds) * 60 });
      process.stderr.write(`${count} worker(s): ${jobs} jobs in ${seconds.toFixed(1)} s\n`);
      await Promise.all(
        workers.map(
          (w) =>
            new Promise((resolve) => {
              w.once("exit", resolve);
              w.kill("SIGTERM");
            }),
        ),
      );
      round++;
    }
  } finally {
    await app.stop();
    removeDataDir(dir); // and the embedded cluster, where it was kept elsewhere (as root)
  }
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, "queue.json"), JSON.stringify(rows, null, 1));
  process.stdout.write(
    [
      `Tiny jobs (NO_DEFENSE, small-cnn, 1 epoch, 200 images); ${cpus().length} cores.`,
      "",
      "| workers | jobs | seconds | jobs/min |",
      "|---|---|---|---|",
      ...rows.map(
        (r) => `| ${r.workers} | ${r.jobs} | ${r.seconds.toFixed(1)} | ${r.jobsPerMinute.toFixed(1)} |`,
      ),
      "",
    ].join("\n"),
  );
}

await main();
