/**
 * trapdoor as a small cluster on one machine, from the built dist/: one PostgreSQL, s3rver as the
 * only object store (every process has its own scratch directory: no shared disk), two `serve`
 * and two `worker` processes. A client uploads through API 1 and watches through API 2; an API
 * dies before an upload is completed and the client completes it on the other; a worker gets
 * SIGTERM mid-training and the other finishes the job from its checkpoint. At the end every
 * dataset and job is final and the store holds exactly the objects the database references.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createDataSource } from "../../src/db/data-source.ts";
import { freePort, startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { createObjectStore } from "../../src/storage/index.ts";
import {
  completeUpload,
  gql,
  launchJob,
  makeDatasets,
  npyPairParts,
  putUpload,
  python,
  removeDataDir,
  subscribe,
  uploadNpyPair,
  waitFor,
} from "../helpers/app.ts";
import { compiledApp, startTrapdoor, stopChild } from "../helpers/process.ts";
import { startS3rver } from "../storage/helpers.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** The built app: dist/ compiled from this checkout, beside the files it reads at run time. */
function builtApp(root: string): string {
  const app = compiledApp(root);
  cpSync(join(repo, "package.json"), join(app, "package.json"));
  cpSync(join(repo, "bin"), join(app, "bin"), { recursive: true });
  for (const shared of ["schema", "trainer", "node_modules"])
    symlinkSync(join(repo, shared), join(app, shared));
  return app;
}

describe("a cluster on one machine: 2 × serve, 2 × worker, PostgreSQL, s3rver", () => {
  const root = mkdtempSync(join(tmpdir(), "trapdoor-cluster-"));
  const processes = new Map<string, ChildProcess>();
  let app: string;
  let pg: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
  let pgDir: string | undefined;
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  let env: NodeJS.ProcessEnv;
  const apis: string[] = [];
  let key: string;

  async function start(
    name: string,
    args: string[],
    extra: NodeJS.ProcessEnv,
    ready: RegExp,
  ): Promise<ChildProcess> {
    const child = await startTrapdoor(
      app,
      args,
      { ...env, TRAPDOOR_DATA_DIR: join(root, name), ...extra },
      ready,
    );
    processes.set(name, child);
    return child;
  }

  async function stop(name: string, signal: NodeJS.Signals): Promise<number | string | null> {
    const how = await stopChild(processes.get(name) as ChildProcess, signal);
    processes.delete(name);
    return how;
  }

  before(async () => {
    app = builtApp(root);
    pgDir = mkdtempSync(join(tmpdir(), "trapdoor-cluster-pg-"));
    pg = await startEmbeddedPostgres(pgDir);
    s3 = await startS3rver("trapdoor-cluster");
    env = {
      PATH: process.env.PATH,
      HOME: root,
      DATABASE_URL: pg.url,
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: s3.region,
      S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      TRAPDOOR_SIGNING_SECRET: "cluster",
      TRAPDOOR_AUTO_MIGRATE: "false",
      TRAPDOOR_PYTHON: python,
      TRAPDOOR_POLL_SECONDS: "1",
      TRAPDOOR_HEARTBEAT_SECONDS: "1",
      TRAPDOOR_STALE_AFTER_SECONDS: "5",
    };
    const run = (args: string[]) => {
      const out = spawnSync(process.execPath, ["bin/trapdoor.js", ...args], {
        cwd: app,
        env: { ...env, TRAPDOOR_DATA_DIR: join(root, "admin") },
        encoding: "utf8",
      });
      assert.equal(out.status, 0, out.stderr);
      return out.stdout;
    };
    run(["migrate"]);
    key = /td_\S+/.exec(run(["tenant", "cluster"]))?.[0] as string;
    for (const name of ["api-1", "api-2"]) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      await start(name, ["serve"], { PORT: String(port), TRAPDOOR_PUBLIC_URL: url }, /trapdoor API on/);
      apis.push(url);
    }
    for (const name of ["worker-1", "worker-2"]) await start(name, ["worker"], {}, /serving queues/);
  });

  after(async () => {
    for (const child of processes.values()) child.kill("SIGKILL");
    await pg?.stop();
    if (pgDir) removeDataDir(pgDir); // and the cluster, where it was kept elsewhere (as root)
    await s3?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("serves uploads, an API's death, a worker's shutdown and subscriptions across replicas without losing anything", async () => {
    const [api1, api2] = apis as [string, string];
    const data = makeDatasets(join(root, "data"), { nTrain: 600, nHoldout: 120, nTest: 120 });
    const ids = {
      train: await uploadNpyPair(api1, key, data.train, "TRAIN"),
      holdout: await uploadNpyPair(api1, key, data.holdout, "HOLDOUT"),
    };

    // API 1 dies after the bytes are in the store but before the upload is completed: the client
    // completes it on API 2.
    const testId = await putUpload(api1, key, { name: "test", role: "TEST" }, npyPairParts(data.test));
    assert.equal(await stop("api-1", "SIGKILL"), "SIGKILL");
    await assert.rejects(fetch(`${api1}/healthz`));
    await completeUpload(api2, key, testId);
    const test = await waitFor("the test set, completed on API 2", async () => {
      const res = await gql<{ dataset: { status: string } }>(
        api2,
        key,
        `query($id: ID!) { dataset(id: $id) { status } }`,
        {
          id: testId,
        },
      );
      return ["READY", "FAILED"].includes(res.data?.dataset.status as string) ? res.data?.dataset : null;
    });
    assert.equal(test.status, "READY");

    // A training job launched and watched on API 2; its worker is stopped mid-training.
    const jobId = await launchJob(api2, key, {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: testId,
      hyperparameters: { epochs: 8, batchSize: 16 },
      idempotencyKey: "cluster",
    });
    const watch = subscribe<{ jobUpdated: { status: string; attempt: number; worker: string | null } }>(
      api2,
      key,
      `subscription($id: ID!) { jobUpdated(id: $id) { status attempt worker } }`,
      { id: jobId },
    );
    const db = createDataSource(pg.url);
    await db.initialize();
    try {
      const running = await waitFor("a checkpoint of the first attempt", async () => {
        const rows = await db.query(
          "SELECT status, worker, checkpoint_key FROM training_jobs WHERE id = $1",
          [jobId],
        );
        return rows[0].status === "RUNNING" && rows[0].checkpoint_key ? rows[0] : null;
      });
      const holder = [...processes.entries()].find(
        ([name, child]) => name.startsWith("worker") && running.worker.endsWith(`:${child.pid}`),
      )?.[0] as string;
      assert.ok(holder, `no worker process runs ${running.worker}`);
      const sigterm = Date.now();
      assert.equal(await stop(holder, "SIGTERM"), 0);
      const resumed = await waitFor("another worker to take the job", async () => {
        const rows = await db.query("SELECT status, worker FROM training_jobs WHERE id = $1", [jobId]);
        return rows[0].status === "RUNNING" && rows[0].worker !== running.worker ? Date.now() : null;
      });
      const done = await watch.waitFor((r) => r.data?.jobUpdated.status === "SUCCEEDED", 180_000);
      const succeeded = Date.now();
      assert.equal(done.jobUpdated.attempt, 1, "the hand-back spent no attempt");
      console.log(
        `cluster timeline: SIGTERM → resumed on the other worker ${((resumed - sigterm) / 1000).toFixed(1)} s → SUCCEEDED ${((succeeded - sigterm) / 1000).toFixed(1)} s`,
      );
      const repeated = await db.query(
        "SELECT stage, name, epoch FROM job_metrics WHERE job_id = $1 GROUP BY stage, name, epoch HAVING count(*) > 1",
        [jobId],
      );
      assert.deepEqual(repeated, [], "resumed, not restarted");
      await watch.close();

      // Nothing left behind: every row final, the store holds exactly what the database references.
      const open = await db.query(
        `SELECT 'dataset' AS what, id, status FROM datasets WHERE status NOT IN ('READY', 'FAILED')
         UNION ALL SELECT 'job', id, status FROM training_jobs WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')`,
      );
      assert.deepEqual(open, []);
      const referenced = new Set<string>();
      for (const row of await db.query("SELECT tenant_id, id, parts, manifest FROM datasets")) {
        for (const part of row.parts as { key: string }[]) referenced.add(part.key);
        for (const file of Object.keys((row.manifest?.sha256 ?? {}) as Record<string, string>))
          referenced.add(`tenants/${row.tenant_id}/datasets/${row.id}/canonical/${file}`);
        referenced.add(`tenants/${row.tenant_id}/datasets/${row.id}/canonical/manifest.json`);
      }
      for (const row of await db.query("SELECT storage_key FROM artifacts")) referenced.add(row.storage_key);
      for (const row of await db.query(
        "SELECT checkpoint_key FROM training_jobs WHERE checkpoint_key IS NOT NULL",
      ))
        referenced.add(row.checkpoint_key);
      const store = createObjectStore({
        store: {
          kind: "s3",
          bucket: s3.bucket,
          region: s3.region,
          endpoint: s3.endpoint,
          forcePathStyle: true,
          credentials: s3.credentials,
        },
        publicBaseUrl: api2,
        signingSecret: "cluster",
      });
      assert.deepEqual((await store.list("")).sort(), [...referenced].sort());
    } finally {
      await db.destroy();
    }
  });
});
