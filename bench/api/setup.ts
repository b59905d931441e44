/** The API benchmarks' set-up: an API on a free port, and one tenant's datasets and jobs. */

import { randomUUID } from "node:crypto";
import { loadConfig } from "../../src/config.ts";
import { insertDataset, markDatasetReady } from "../../src/db/datasets.ts";
import { freePort } from "../../src/db/embedded.ts";
import { insertJob, transition, updateRunning } from "../../src/db/jobs.ts";
import { type App, startApp } from "../../src/main.ts";

/**
 * trapdoor's API alone (no worker) on a free loopback port, with data in `dir`: embedded
 * PostgreSQL unless `env` names a DATABASE_URL. One tenant drives every connection in these
 * benches, so the per-tenant in-flight cap is off and the rate limit out of reach unless `env`
 * sets them.
 */
export async function startBenchApi(dir: string, env: Record<string, string> = {}): Promise<App> {
  const port = await freePort();
  return startApp(
    loadConfig(
      {
        ...process.env,
        PORT: String(port),
        TRAPDOOR_PUBLIC_URL: `http://127.0.0.1:${port}`,
        TRAPDOOR_RATE_LIMIT: "1000000000",
        TRAPDOOR_MAX_CONCURRENT_REQUESTS: "0",
        ...env,
      },
      { dataDir: dir },
    ),
    { api: true, worker: false },
  );
}

/** One tenant's jobs in every state, half with progress and metrics (realistic row sizes). */
export async function seedJobs(app: App, count: number): Promise<{ jobs: string[]; dataset: string }> {
  const [{ id: tenantId }] = await app.db.query("SELECT id FROM tenants LIMIT 1");
  const datasets: Record<string, string> = {};
  for (const role of ["TRAIN", "HOLDOUT", "TEST"] as const) {
    const id = randomUUID();
    await insertDataset(app.db, {
      id,
      tenantId,
      name: role.toLowerCase(),
      role,
      format: "NPY_PAIR",
      status: "VALIDATING",
      parts: [],
      sizeBytes: 1,
    });
    await markDatasetReady(app.db, id, {
      count: 1000,
      height: 32,
      width: 32,
      channels: 3,
      numClasses: 10,
      classNames: Array.from({ length: 10 }, (_, i) => `class${i}`),
      classHistogram: Array(10).fill(100),
    });
    datasets[role] = id;
  }
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const [job] = await insertJob(app.db, {
      tenantId,
      idempotencyKey: `bench-${i}`,
      inputHash: "0".repeat(64),
      method: i % 2 ? "TRAP_AND_REPLACE" : "NO_DEFENSE",
      architecture: "wrn16-1",
      trainId: datasets.TRAIN as string,
      holdoutId: datasets.HOLDOUT as string,
      testId: datasets.TEST as string,
      asrTestId: null,
      attack: { name: "badnet_grid", target: 0, params: {} },
      target: 0,
      seed: i,
      hyperparameters: { stage1Epochs: 10, stage2Epochs: 10, lambda1: 10, lambda2: 0.1 },
      queue: "cpu",
      gpus: null,
      maxRuntimeSeconds: null,
      labels: { bench: "latency" },
      externalId: `bench-${i}`,
    });
    await transition(app.db, job.id, "QUEUED", "seeded");
    if (i % 2 === 0) {
      await updateRunning(app.db, job.id, {
        progress: { stage: "stage1", epoch: 4, epochs: 10, fraction: 0.45, imagesPerSecond: 26586.2 },
        metrics: { asr: 0.3133, ca: 0.8908, mse: 0.0123, stage1Asr: 0.99, stage1Ca: 0.91, seconds: 412.5 },
        logTail: Array.from({ length: 20 }, (_, k) => `epoch ${k}: loss 0.${k}`),
      });
    }
    ids.push(job.id);
  }
  return { jobs: ids, dataset: datasets.TRAIN as string };
}
