/**
 * Abuse cases 6 (storage leaks: a deleted dataset's upload URLs and in-flight ingest still wrote
 * bytes; temporaries and scratch directories survived crashes; artifacts stayed forever) and 7 (a
 * job no worker can serve sat QUEUED forever with no word why).
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { ingestUpload } from "../../src/datasets/upload-ingest.ts";
import { claimDataset, datasetById } from "../../src/db/datasets.ts";
import {
  completeUpload,
  createUploadSession,
  datasetIds,
  gql,
  launchJob,
  makeDatasets,
  npyPairParts,
  putUpload,
  startReplica,
  startTestApp,
  uploadJobDatasets,
  waitFor,
} from "../helpers/app.ts";
import { assertInvariants } from "../helpers/invariants.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000);

describe("abuse: storage leaks (case 6)", () => {
  let app: TestApp;
  let data: ReturnType<typeof makeDatasets>;
  before(async () => {
    // No worker: the tests below play the worker's part where they need it.
    app = await startTestApp({}, { api: true, worker: false });
    data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-leaks-")), {
      nTrain: 60,
      nHoldout: 20,
      nTest: 20,
    });
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  it("a deleted dataset's upload URL answers 410 and stores nothing", async () => {
    const parts = npyPairParts(data.test);
    const payload = await createUploadSession(app.url as string, app.key, {
      name: "gone",
      role: "TEST",
      format: "NPY_PAIR",
      parts: parts.map((p) => ({
        name: p.name,
        sizeBytes: p.bytes.length,
        sha256: createHash("sha256").update(p.bytes).digest("hex"),
      })),
    });
    const del = await gql(app.url as string, app.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, {
      id: payload.dataset.id,
    });
    assert.ifError(del.errors?.[0]);
    const put = await fetch(payload.uploads[0]?.url as string, {
      method: "PUT",
      headers: payload.uploads[0]?.headers,
      body: new Uint8Array(parts[0]?.bytes as Buffer),
    });
    assert.equal(put.status, 410);
    assert.match(((await put.json()) as { error: string }).error, /deleted/);
    assert.deepEqual(await app.store.list(`tenants/`), []);
  });

  it("a dataset deleted while its ingest runs ends deleted with nothing stored", async () => {
    const id = await putUpload(
      app.url as string,
      app.key,
      { name: "racing", role: "TEST" },
      npyPairParts(data.test),
    );
    await completeUpload(app.url as string, app.key, id);
    // A worker claims it (the queue message), then the user deletes it mid-ingest.
    const claimed = await claimDataset(app.db, id, 1, "test-worker");
    assert.ok(claimed);
    const del = await gql(app.url as string, app.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, {
      id,
    });
    assert.ifError(del.errors?.[0]);
    await ingestUpload(
      {
        db: app.db,
        store: app.store,
        scratchDir: join(app.dir, "scratch"),
        maxUploadBytes: app.config.limits.maxUploadBytes,
        maxDecodedBytes: app.config.limits.maxDecodedBytes,
        quotaBytesLeft: async () => Number.MAX_SAFE_INTEGER,
      },
      claimed,
    );
    const row = await datasetById(app.db, id);
    assert.notEqual(row?.status, "READY");
    assert.deepEqual(await app.store.list(`tenants/${claimed.tenant_id}/datasets/${id}/`), []);
  });

  it("the sweeper removes dead temporaries and scratch, and purges a deleted dataset's late objects", async () => {
    const tmp = join(app.config.store.kind === "local" ? app.config.store.root : "", "tmp");
    mkdirSync(tmp, { recursive: true });
    const deadPart = join(tmp, `${randomUUID()}.part`);
    const livePart = join(tmp, `${randomUUID()}.part`);
    writeFileSync(deadPart, "half an upload");
    writeFileSync(livePart, "an upload in progress");
    utimesSync(deadPart, hoursAgo(2), hoursAgo(2));
    const scratch = join(app.dir, "scratch");
    const dead = [
      `ingest-${randomUUID()}-1`,
      `poison-${randomUUID()}-2`,
      `sanitize-${randomUUID()}-1`,
      `model-${randomUUID()}-1`,
      `${randomUUID()}-1`,
    ];
    for (const name of [...dead, "not-ours"]) {
      mkdirSync(join(scratch, name, "canonical"), { recursive: true });
      utimesSync(join(scratch, name), hoursAgo(2), hoursAgo(2));
    }
    // An S3 presigned PUT cannot be revoked: bytes can land under a dataset deleted minutes ago.
    const id = await putUpload(
      app.url as string,
      app.key,
      { name: "late", role: "TEST" },
      npyPairParts(data.test),
    );
    await gql(app.url as string, app.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, { id });
    const tenant = (await app.db.query("SELECT tenant_id FROM datasets WHERE id = $1", [id]))[0].tenant_id;
    const late = `tenants/${tenant}/datasets/${id}/raw/images`;
    await app.store.putStream(late, Readable.from([Buffer.from("late bytes")]));
    await app.db.query("UPDATE datasets SET deleted_at = now() - interval '20 minutes' WHERE id = $1", [id]);

    const report = await app.sweeper.sweep();
    assert.equal(report.temporaries, 1);
    assert.ok(!existsSync(deadPart) && existsSync(livePart));
    for (const name of dead) assert.ok(!existsSync(join(scratch, name)), `${name} swept`);
    assert.ok(existsSync(join(scratch, "not-ours")), "a directory the sweeper does not know stays");
    assert.ok(report.purgedDatasets >= 1);
    assert.deepEqual(await app.store.list(`tenants/${tenant}/datasets/${id}/`), []);
    rmSync(join(scratch, "not-ours"), { recursive: true });
    const again = await app.sweeper.sweep();
    assert.equal(again.purgedDatasets, 0, "a purged dataset is not purged twice");
  });
});

describe("abuse: a job nobody can serve (case 7), deleteJob and artifact retention", () => {
  let app: TestApp;
  let ids: Record<"train" | "holdout" | "test", string>;
  before(async () => {
    // This deployment's worker serves ingest only: no CPU and no GPU training worker.
    app = await startTestApp({ TRAPDOOR_WORKER_QUEUES: "ingest" });
    const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-unserved-")), {
      nTrain: 100,
      nHoldout: 20,
      nTest: 20,
    });
    ids = await uploadJobDatasets(app.url as string, app.key, data);
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  const launch = (url: string, accelerator: string, key: string) =>
    gql<{ launchTraining: { id: string; status: string; waitingReason: string | null } }>(
      url,
      app.key,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id status waitingReason } }`,
      {
        input: {
          method: "NO_DEFENSE",
          ...datasetIds(ids),
          hyperparameters: { epochs: 1, batchSize: 32 },
          resources: { accelerator },
          idempotencyKey: key,
        },
      },
    );

  it("is refused at once with FAILED_PRECONDITION when no live worker serves its queue", async () => {
    for (const accelerator of ["CPU", "GPU"]) {
      const res = await launch(app.url as string, accelerator, `none-${accelerator}`);
      assert.equal(res.errors?.[0]?.extensions?.code, "FAILED_PRECONDITION", JSON.stringify(res));
      assert.match(res.errors?.[0]?.message ?? "", /no live worker serves the (cpu|gpu) queue/);
    }
  });

  it("on an autoscaled queue it waits QUEUED with a waitingReason, then fails QUEUE_TIMEOUT", async () => {
    const replica = await startReplica(
      app,
      { api: true, worker: false },
      {
        TRAPDOOR_AUTOSCALED_QUEUES: "gpu",
        TRAPDOOR_QUEUE_TIMEOUT_SECONDS: "1",
      },
    );
    try {
      const res = await launch(replica.url as string, "GPU", "autoscaled");
      const job = res.data?.launchTraining;
      assert.ok(job, JSON.stringify(res.errors));
      assert.equal(job.status, "QUEUED");
      assert.match(job.waitingReason ?? "", /autoscaler/);
      await new Promise((r) => setTimeout(r, 1500));
      const report = await replica.sweeper.sweep();
      assert.equal(report.timedOutJobs, 1);
      const after = await gql<{
        job: { status: string; error: { code: string } | null; waitingReason: string | null };
      }>(
        app.url as string,
        app.key,
        `query($id: ID!) { job(id: $id) { status error { code } waitingReason } }`,
        { id: job.id },
      );
      assert.deepEqual(after.data?.job, {
        status: "FAILED",
        error: { code: "QUEUE_TIMEOUT" },
        waitingReason: null,
      });
    } finally {
      await replica.stop();
    }
  });

  it("deleteJob refuses a live job, and removes a finished one with every object; retention expires artifacts", async () => {
    const worker = await startReplica(app, { api: false, worker: true }, { TRAPDOOR_WORKER_QUEUES: "cpu" });
    try {
      const url = app.url as string;
      const id = await launchJob(url, app.key, {
        method: "NO_DEFENSE",
        ...datasetIds(ids),
        hyperparameters: { epochs: 1, batchSize: 32 },
        idempotencyKey: "to-delete",
      });
      const early = await gql(url, app.key, `mutation($id: ID!) { deleteJob(id: $id) }`, { id });
      if (early.errors) assert.equal(early.errors[0]?.extensions?.code, "CONFLICT");
      await waitFor("the job to succeed", async () => {
        const res = await gql<{ job: { status: string } }>(
          url,
          app.key,
          `query($id: ID!) { job(id: $id) { status } }`,
          {
            id,
          },
        );
        return res.data?.job.status === "SUCCEEDED";
      });
      const tenant = (await app.db.query("SELECT tenant_id FROM training_jobs WHERE id = $1", [id]))[0]
        .tenant_id;
      const prefix = `tenants/${tenant}/jobs/${id}/`;
      assert.ok((await app.store.list(prefix)).length > 0);
      const shown = await gql<{ job: { artifactsExpireAt: string; artifacts: unknown[] } }>(
        url,
        app.key,
        `query($id: ID!) { job(id: $id) { artifactsExpireAt artifacts { kind } } }`,
        { id },
      );
      const expires = Date.parse(shown.data?.job.artifactsExpireAt ?? "");
      assert.ok(Math.abs(expires - (Date.now() + 30 * 86_400_000)) < 120_000, "30 days after it ended");
      // 31 days later, the sweep deletes the artifacts but keeps the job's record.
      await app.db.query("UPDATE training_jobs SET finished_at = now() - interval '31 days' WHERE id = $1", [
        id,
      ]);
      assert.equal((await app.sweeper.sweep()).expiredJobs, 1);
      assert.deepEqual(await app.store.list(prefix), []);
      const expired = await gql<{
        job: { status: string; artifacts: unknown[]; artifactsExpiredAt: string | null };
      }>(url, app.key, `query($id: ID!) { job(id: $id) { status artifacts { kind } artifactsExpiredAt } }`, {
        id,
      });
      assert.equal(expired.data?.job.status, "SUCCEEDED");
      assert.deepEqual(expired.data?.job.artifacts, []);
      assert.ok(expired.data?.job.artifactsExpiredAt);
      const del = await gql<{ deleteJob: boolean }>(
        url,
        app.key,
        `mutation($id: ID!) { deleteJob(id: $id) }`,
        { id },
      );
      assert.equal(del.data?.deleteJob, true);
      const gone = await gql<{ job: null }>(url, app.key, `query($id: ID!) { job(id: $id) { id } }`, { id });
      assert.equal(gone.data?.job, null);
      const twice = await gql(url, app.key, `mutation($id: ID!) { deleteJob(id: $id) }`, { id });
      assert.equal(twice.errors?.[0]?.extensions?.code, "NOT_FOUND");
    } finally {
      await worker.stop();
    }
  });
});
