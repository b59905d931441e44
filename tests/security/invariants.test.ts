import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import {
  createUploadSession,
  datasetIds,
  gql,
  launchJob,
  makeDatasets,
  npyPairParts,
  sha256,
  startTestApp,
  uploadJobDatasets,
  waitFor,
} from "../helpers/app.ts";
import { assertInvariants, checkInvariants } from "../helpers/invariants.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

describe("system invariants: final states, and the store holds exactly what the database references", () => {
  let app: TestApp;
  let ids: Record<"train" | "holdout" | "test", string>;
  let jobId: string;

  before(async () => {
    app = await startTestApp();
    const url = app.url as string;
    const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-invariants-")), {
      nTrain: 200,
      nHoldout: 40,
      nTest: 40,
    });
    ids = await uploadJobDatasets(url, app.key, data);
    jobId = await launchJob(url, app.key, {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      ...datasetIds(ids),
      hyperparameters: { epochs: 1, batchSize: 32 },
      idempotencyKey: "invariants",
    });
    await waitFor("the job to succeed", async () => {
      const rows = await app.db.query("SELECT status FROM training_jobs WHERE id = $1", [jobId]);
      if (rows[0]?.status === "FAILED") throw new Error("the job failed");
      return rows[0]?.status === "SUCCEEDED";
    });
    // An upload session the client abandoned after one part: final, its part allowed.
    const parts = npyPairParts(data.test);
    const session = await createUploadSession(url, app.key, {
      name: "abandoned",
      role: "TEST",
      format: "NPY_PAIR",
      parts: parts.map((p) => ({ name: p.name, sizeBytes: p.bytes.length, sha256: sha256(p.bytes) })),
    });
    const first = session.uploads.find((u) => u.part === "images");
    assert.ok(first);
    const put = await fetch(first.url, {
      method: "PUT",
      headers: first.headers,
      body: new Uint8Array(parts[0]?.bytes as Buffer),
    });
    assert.ok(put.ok, `PUT images: ${put.status}`);
  });

  after(async () => {
    await app?.cleanup();
  });

  it("hold on a healthy app after uploads and a training job", async () => {
    const report = await assertInvariants(app, { settleTimeoutMs: 30_000 });
    assert.equal(report.counts.jobs, 1);
    assert.equal(report.counts.datasets, 4);
    // 3 datasets × (2 raw parts + 3 canonical files) + the job's artifacts (a checkpoint if kept).
    assert.ok(report.counts.referenced > 15, `referenced: ${report.counts.referenced}`);
  });

  it("report an orphan: an object no row references", async () => {
    const stray = "tenants/00000000-0000-4000-8000-000000000000/datasets/stray/raw/images";
    await app.store.putStream(stray, Readable.from([Buffer.from("stray bytes")]));
    try {
      const report = await checkInvariants(app);
      assert.deepEqual(
        report.violations.map((v) => [v.kind, v.subject]),
        [["orphan-object", stray]],
      );
      await assert.rejects(assertInvariants(app), new RegExp(`orphan-object: ${stray}`));
    } finally {
      await app.store.delete(stray);
    }
    await assertInvariants(app);
  });

  it("report a missing object: a referenced key absent from the store", async () => {
    const [artifact] = await app.db.query("SELECT storage_key FROM artifacts WHERE job_id = $1 LIMIT 1", [
      jobId,
    ]);
    const [canonical] = (await app.store.list(`tenants/`)).filter((k) =>
      k.endsWith(`${ids.train}/canonical/labels.npy`),
    );
    assert.ok(artifact?.storage_key && canonical);
    const saved = new Map<string, Buffer>();
    for (const key of [artifact.storage_key as string, canonical]) {
      saved.set(key, await readAll(await app.store.getStream(key)));
      await app.store.delete(key);
    }
    try {
      const report = await checkInvariants(app);
      assert.deepEqual(
        report.violations.map((v) => [v.kind, v.subject]).sort(),
        [...saved.keys()].sort().map((key) => ["missing-object", key]),
      );
      await assert.rejects(assertInvariants(app), /missing-object/);
    } finally {
      for (const [key, bytes] of saved) await app.store.putStream(key, Readable.from([bytes]));
    }
    await assertInvariants(app);
  });

  it("report work that has not settled, after waiting up to the timeout", async () => {
    await app.db.query("UPDATE training_jobs SET status = 'RUNNING' WHERE id = $1", [jobId]);
    try {
      const started = Date.now();
      const report = await checkInvariants(app, { settleTimeoutMs: 600, pollMs: 100 });
      assert.ok(Date.now() - started >= 600);
      assert.deepEqual(
        report.violations.map((v) => [v.kind, v.subject, v.detail]),
        [["unsettled-job", jobId, "RUNNING"]],
      );
      // An upload waiting for bytes is unsettled when the caller says so.
      const strict = await checkInvariants(app, { awaitingUploadIsFinal: false });
      assert.ok(
        strict.violations.some((v) => v.kind === "unsettled-dataset" && v.detail === "AWAITING_UPLOAD"),
      );
    } finally {
      await app.db.query("UPDATE training_jobs SET status = 'SUCCEEDED' WHERE id = $1", [jobId]);
    }
  });

  it("still hold once a dataset used by a finished job is deleted (its prefix goes)", async () => {
    const res = await gql(app.url as string, app.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, {
      id: ids.holdout,
    });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.deepEqual(
      await app.store.list(`tenants/`).then((k) => k.filter((x) => x.includes(ids.holdout))),
      [],
    );
    await assertInvariants(app);
  });
  it("hold after a part is PUT to a deleted upload session's URL (refused: nothing is orphaned)", async () => {
    const url = app.url as string;
    const bytes = Buffer.from("late part");
    const payload = await createUploadSession(url, app.key, {
      name: "late",
      role: "TEST",
      format: "NPZ",
      sizeBytes: bytes.length,
      sha256: sha256(bytes),
    });
    await gql(url, app.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, { id: payload.dataset.id });
    const [target] = payload.uploads;
    assert.ok(target);
    const put = await fetch(target.url, {
      method: "PUT",
      headers: target.headers,
      body: new Uint8Array(bytes),
    });
    assert.equal(put.status, 410);
    await assertInvariants(app);
  });
});
