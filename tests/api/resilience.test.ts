import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { QueueName } from "../../src/config.ts";
import { createDataSource, MIGRATIONS, migrate, migrationsPending } from "../../src/db/data-source.ts";
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { startWorker } from "../../src/worker/index.ts";
import { npyBytes } from "../datasets/helpers.ts";
import {
  completeUpload,
  gql,
  launchJob,
  makeDatasets,
  putUpload,
  removeDataDir,
  sha256,
  startTestApp,
  uploadJobDatasets,
  waitFor,
} from "../helpers/app.ts";
import { startS3rver } from "../storage/helpers.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;
const repo = fileURLToPath(new URL("../..", import.meta.url));

function launch(
  app: TestApp,
  ids: Record<string, string>,
  key: string,
  hyperparameters: Record<string, unknown>,
) {
  return launchJob(app.url as string, app.key, {
    method: "NO_DEFENSE",
    architecture: "small-cnn",
    trainDatasetId: ids.train,
    holdoutDatasetId: ids.holdout,
    testDatasetId: ids.test,
    hyperparameters,
    idempotencyKey: key,
  });
}

/** A worker in this process on `app`'s services, serving `queue` only, named `name`. */
function inProcessWorker(app: TestApp, queue: QueueName, name: string) {
  return startWorker(
    { ...app.config, worker: { ...app.config.worker, queues: [queue] } },
    { execution: app.execution, datasets: app.datasetProcessor, models: app.models, workers: app.workers },
    app.queue,
    name,
  );
}

/**
 * A separate `trapdoor worker` process on `app`'s database and store, with short heartbeats.
 * `detached`: its own process group, so SIGKILL to the group takes its trainer too.
 */
function workerProcess(app: TestApp, queues: string | undefined, detached: boolean) {
  return spawn(process.execPath, ["bin/trapdoor.js", "worker", "--data-dir", app.dir], {
    cwd: repo,
    env: {
      ...process.env,
      DATABASE_URL: app.databaseUrl,
      TRAPDOOR_PUBLIC_URL: app.config.publicBaseUrl,
      ...(queues ? { TRAPDOOR_WORKER_QUEUES: queues } : {}),
      TRAPDOOR_POLL_SECONDS: "1",
      TRAPDOOR_HEARTBEAT_SECONDS: "1",
      TRAPDOOR_STALE_AFTER_SECONDS: "5",
    },
    detached,
    stdio: "ignore",
  });
}

describe("migrations", () => {
  it("run from an empty database and revert", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trapdoor-migrate-"));
    const pg = await startEmbeddedPostgres(dir);
    const db = createDataSource(pg.url);
    await db.initialize();
    try {
      assert.deepEqual(
        await migrate(db),
        MIGRATIONS.map((m) => new m().name),
      );
      const tables = async () =>
        (await db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).map(
          (r: { tablename: string }) => r.tablename,
        );
      assert.ok((await tables()).includes("training_jobs"));
      assert.deepEqual(await migrate(db), []);
      assert.equal(await migrationsPending(db), false);
      for (const _ of MIGRATIONS) await db.undoLastMigration({ transaction: "each" });
      assert.deepEqual(await tables(), ["trapdoor_migrations"]);
      assert.equal(await migrationsPending(db), true);
      // Replicas starting together: the advisory lock lets one migrate, the others find it done.
      const others = [createDataSource(pg.url), createDataSource(pg.url), createDataSource(pg.url)];
      for (const other of others) await other.initialize();
      try {
        const applied = await Promise.all(others.map((other) => migrate(other)));
        assert.deepEqual(applied.flat().sort(), MIGRATIONS.map((m) => new m().name).sort());
      } finally {
        for (const other of others) await other.destroy();
      }
    } finally {
      await db.destroy();
      await pg.stop();
      removeDataDir(dir);
    }
  });
});

describe("a worker killed mid-run", () => {
  it("is noticed by its missing heartbeat; the job is retried, resumes from the checkpoint and succeeds as attempt 2", async () => {
    // This process's worker ingests the uploads only; training is left to the worker below.
    const app = await startTestApp({
      TRAPDOOR_WORKER_QUEUES: "ingest,poison",
      TRAPDOOR_AUTOSCALED_QUEUES: "cpu",
    });
    try {
      const ids = await uploadJobDatasets(
        app.url as string,
        app.key,
        makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-data-"))),
      );
      const id = await launch(app, ids, "killed-worker", { epochs: 6, batchSize: 16 });
      // A separate worker process on the same database and store, killed with SIGKILL (no clean-up).
      const worker = workerProcess(app, undefined, true);
      const running = await waitFor("a checkpoint from the first worker", async () => {
        const rows = await app.db.query(
          "SELECT status, checkpoint_key, attempt FROM training_jobs WHERE id = $1",
          [id],
        );
        return rows[0].status === "RUNNING" && rows[0].checkpoint_key ? rows[0] : null;
      });
      assert.equal(running.attempt, 1);
      process.kill(-(worker.pid as number), "SIGKILL"); // the worker and its trainer
      const second = await inProcessWorker(app, "cpu", "rescuer");
      try {
        const job = await waitFor(
          "the retried job to finish",
          async () => {
            const rows = await app.db.query(
              "SELECT status, attempt, worker FROM training_jobs WHERE id = $1",
              [id],
            );
            return ["SUCCEEDED", "FAILED"].includes(rows[0].status) ? rows[0] : null;
          },
          180_000,
        );
        assert.deepEqual([job.status, job.attempt, job.worker], ["SUCCEEDED", 2, "rescuer"]);
        const reasons = (
          await app.db.query("SELECT reason FROM job_transitions WHERE job_id = $1 ORDER BY id", [id])
        ).map((r: { reason: string }) => r.reason);
        assert.ok(reasons.some((r: string) => /stopped sending heartbeats/.test(r)));
        // Resumed, not restarted: attempt 2 reported no metrics for epochs the first attempt finished.
        const epochs = await app.db.query(
          "SELECT attempt, min(epoch) AS first FROM job_metrics WHERE job_id = $1 GROUP BY attempt ORDER BY attempt",
          [id],
        );
        assert.equal(epochs.length, 2);
        assert.ok(Number(epochs[1].first) > 0, `attempt 2 started at epoch ${epochs[1].first}`);
      } finally {
        await second.stop();
      }
    } finally {
      await app.cleanup();
    }
  });
});

describe("a worker stopped with SIGTERM (rolling update, spot node taken back)", () => {
  it("hands its job back with the checkpoint, without spending an attempt; the next worker resumes it", async () => {
    const app = await startTestApp({
      TRAPDOOR_WORKER_QUEUES: "ingest,poison",
      TRAPDOOR_AUTOSCALED_QUEUES: "cpu",
    });
    try {
      const ids = await uploadJobDatasets(
        app.url as string,
        app.key,
        makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-data-"))),
      );
      const id = await launch(app, ids, "preempted-worker", { epochs: 6, batchSize: 16 });
      const worker = workerProcess(app, "cpu", false);
      const exited = new Promise<number | string | null>((resolve) =>
        worker.once("exit", (code, signal) => resolve(code ?? signal)),
      );
      await waitFor("a checkpoint from the first worker", async () => {
        const rows = await app.db.query("SELECT status, checkpoint_key FROM training_jobs WHERE id = $1", [
          id,
        ]);
        return rows[0].status === "RUNNING" && rows[0].checkpoint_key;
      });
      worker.kill("SIGTERM"); // the worker alone, as tini passes it on; it stops its trainer itself
      assert.equal(await exited, 0);
      const handedBack = (
        await app.db.query("SELECT status, attempt, checkpoint_key FROM training_jobs WHERE id = $1", [id])
      )[0];
      assert.equal(handedBack.status, "QUEUED");
      assert.equal(handedBack.attempt, 0, "the hand-back spent no attempt");
      assert.ok(handedBack.checkpoint_key);
      const second = await inProcessWorker(app, "cpu", "next");
      try {
        const job = await waitFor(
          "the handed-back job to finish",
          async () => {
            const rows = await app.db.query(
              "SELECT status, attempt, worker FROM training_jobs WHERE id = $1",
              [id],
            );
            return ["SUCCEEDED", "FAILED", "CANCELLED"].includes(rows[0].status) ? rows[0] : null;
          },
          180_000,
        );
        assert.deepEqual([job.status, job.attempt, job.worker], ["SUCCEEDED", 1, "next"]);
        const reasons = (
          await app.db.query("SELECT reason FROM job_transitions WHERE job_id = $1 ORDER BY id", [id])
        ).map((r: { reason: string }) => r.reason);
        assert.ok(reasons.includes("worker shutdown"), reasons.join(" | "));
        // Resumed, not restarted: no epoch's metric was recorded twice.
        const repeated = await app.db.query(
          `SELECT stage, name, epoch FROM job_metrics WHERE job_id = $1 GROUP BY stage, name, epoch HAVING count(*) > 1`,
          [id],
        );
        assert.deepEqual(repeated, []);
      } finally {
        await second.stop();
      }
    } finally {
      await app.cleanup();
    }
  });
});

describe("a worker killed mid-ingest", () => {
  it("leaves the dataset to the next attempt on another worker, which makes it READY", async () => {
    const app = await startTestApp({ TRAPDOOR_AUTOSCALED_QUEUES: "cpu" }, { api: true, worker: false });
    try {
      // Big enough that ingest (sha256, conversion, storing) takes a while after the claim.
      const count = 50_000;
      const images = npyBytes("|u1", [count, 32, 32, 3], new Uint8Array(count * 32 * 32 * 3).fill(7));
      const labels = npyBytes("<i8", [count], new Uint8Array(new BigInt64Array(count).fill(1n).buffer));
      labels.writeBigInt64LE(0n, labels.length - 8); // two classes
      const parts = [
        { name: "images", bytes: images },
        { name: "labels", bytes: labels },
      ];
      const id = await putUpload(app.url as string, app.key, { name: "big", role: "TRAIN" }, parts);
      const worker = workerProcess(app, "ingest", true);
      await completeUpload(app.url as string, app.key, id);
      const claimed = await waitFor(
        "the first worker to claim the ingest",
        async () => {
          const rows = await app.db.query(
            "SELECT status, processing_attempt, processing_worker FROM datasets WHERE id = $1",
            [id],
          );
          return rows[0].processing_attempt === 1 ? rows[0] : null;
        },
        60_000,
        20,
      );
      process.kill(-(worker.pid as number), "SIGKILL");
      assert.equal(claimed.status, "VALIDATING", "the ingest finished before the worker could be killed");
      const rescuer = await inProcessWorker(app, "ingest", "rescuer");
      try {
        const done = await waitFor(
          "the dataset to settle",
          async () => {
            const rows = await app.db.query(
              "SELECT status, failure_reason, processing_attempt, processing_worker, count FROM datasets WHERE id = $1",
              [id],
            );
            return ["READY", "FAILED"].includes(rows[0].status) ? rows[0] : null;
          },
          120_000,
        );
        assert.deepEqual(
          [done.status, done.processing_attempt, done.processing_worker, done.count],
          ["READY", 2, "rescuer", count],
          done.failure_reason,
        );
      } finally {
        await rescuer.stop();
      }
    } finally {
      await app.cleanup();
    }
  });
});

describe("the S3 object store path (s3rver)", () => {
  it("uploads through presigned URLs, trains and serves the model from S3", async () => {
    const s3 = await startS3rver("trapdoor-flow");
    const app = await startTestApp({
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: s3.region,
      S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    });
    try {
      assert.equal(app.store.kind, "s3");
      const ids = await uploadJobDatasets(
        app.url as string,
        app.key,
        makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-data-"))),
      );
      const id = await launch(app, ids, "s3-flow", { epochs: 1, batchSize: 64 });
      const job = await waitFor("job", async () => {
        const res = await gql<{
          job: { status: string; artifacts: { kind: string; sha256: string; downloadUrl: string }[] };
        }>(
          app.url as string,
          app.key,
          `query($id: ID!) { job(id: $id) { status artifacts { kind sha256 downloadUrl } } }`,
          { id },
        );
        return ["SUCCEEDED", "FAILED"].includes(res.data?.job.status as string) ? res.data?.job : null;
      });
      assert.equal(job.status, "SUCCEEDED");
      const onnx = job.artifacts.find((a) => a.kind === "onnx");
      assert.ok(onnx);
      assert.ok(onnx.downloadUrl.startsWith(s3.endpoint));
      const bytes = Buffer.from(await (await fetch(onnx.downloadUrl)).arrayBuffer());
      assert.equal(sha256(bytes), onnx.sha256);
    } finally {
      await app.cleanup();
      await s3.stop();
    }
  });
});
