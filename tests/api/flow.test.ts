import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import { gql, makeDatasets, readPart, sha256, startTestApp, waitFor } from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const DATASET = `id name role status failureReason count height width channels numClasses classHistogram`;
const JOB = `id status attempt method worker device metrics { asr ca mse stage1Asr stage1Ca } progress { stage epoch epochs fraction }
  transitions { from to reason } error { code message } artifacts { kind format sizeBytes sha256 downloadUrl(expiresInSeconds: 600) }`;

async function upload(
  app: TestApp,
  key: string,
  dir: string,
  role: string,
  name = role.toLowerCase(),
): Promise<string> {
  const images = readPart(dir, "images.npy");
  const labels = readPart(dir, "labels.npy");
  const created = await gql<{
    createDatasetUpload: {
      dataset: { id: string };
      uploads: { part: string; url: string; headers: Record<string, string> }[];
    };
  }>(
    app.url as string,
    key,
    `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id status } uploads { part url method headers } } }`,
    {
      input: {
        name,
        role,
        format: "NPY_PAIR",
        parts: [
          { name: "images", sizeBytes: images.length, sha256: sha256(images) },
          { name: "labels", sizeBytes: labels.length, sha256: sha256(labels) },
        ],
      },
    },
  );
  assert.equal(created.errors, undefined, JSON.stringify(created.errors));
  const payload = created.data?.createDatasetUpload;
  assert.ok(payload);
  for (const target of payload.uploads) {
    const body = target.part === "images" ? images : labels;
    const res = await fetch(target.url, {
      method: "PUT",
      headers: target.headers,
      body: new Uint8Array(body),
    });
    assert.equal(res.status < 300, true, `upload ${target.part}: ${res.status} ${await res.text()}`);
  }
  const done = await gql(
    app.url as string,
    key,
    `mutation($id: ID!) { completeDatasetUpload(id: $id) { id status } }`,
    { id: payload.dataset.id },
  );
  assert.equal(done.errors, undefined, JSON.stringify(done.errors));
  return payload.dataset.id;
}

async function datasetWhenSettled(app: TestApp, key: string, id: string) {
  return waitFor(`dataset ${id}`, async () => {
    const res = await gql<{ dataset: { status: string } & Record<string, unknown> }>(
      app.url as string,
      key,
      `query($id: ID!) { dataset(id: $id) { ${DATASET} } }`,
      { id },
    );
    const ds = res.data?.dataset;
    return ds && (ds.status === "READY" || ds.status === "FAILED") ? ds : null;
  });
}

async function jobWhen(
  app: TestApp,
  key: string,
  id: string,
  done: (job: Record<string, unknown>) => boolean,
  timeoutMs = 180_000,
) {
  return waitFor(
    `job ${id}`,
    async () => {
      const res = await gql<{ job: Record<string, unknown> }>(
        app.url as string,
        key,
        `query($id: ID!) { job(id: $id) { ${JOB} } }`,
        { id },
      );
      return res.data?.job && done(res.data.job) ? res.data.job : null;
    },
    timeoutMs,
  );
}

describe("the service end to end (embedded Postgres, local store, in-process worker, real trainer)", () => {
  let app: TestApp;
  let ids: Record<string, string>;
  let otherKey: string;

  before(async () => {
    app = await startTestApp();
    const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-data-")));
    ids = {
      train: await upload(app, app.key, data.train, "TRAIN"),
      holdout: await upload(app, app.key, data.holdout, "HOLDOUT"),
      test: await upload(app, app.key, data.test, "TEST"),
      asr: await upload(app, app.key, data.asr, "ASR_TEST"),
    };
    for (const id of Object.values(ids))
      assert.equal((await datasetWhenSettled(app, app.key, id)).status, "READY");
    const other = await createTenant(app.db, "other");
    otherKey = (await createApiKey(app.db, other.id, "k")).key;
  });

  after(async () => {
    await app?.cleanup();
  });

  it("a READY dataset shows its shape, classes and histogram", async () => {
    const ds = (await datasetWhenSettled(app, app.key, ids.train as string)) as Record<string, unknown>;
    assert.deepEqual([ds.count, ds.height, ds.width, ds.channels, ds.numClasses], [600, 16, 16, 1, 4]);
    assert.equal(
      (ds.classHistogram as number[]).reduce((a, b) => a + b, 0),
      600,
    );
  });

  it("poisonDataset builds the poisoned TRAIN set and its ASR_TEST set on a worker", async () => {
    const res = await gql<{ poisonDataset: { dataset: { id: string }; asrTestDataset: { id: string } } }>(
      app.url as string,
      app.key,
      `mutation($input: PoisonDatasetInput!) { poisonDataset(input: $input) { dataset { id } asrTestDataset { id } } }`,
      {
        input: {
          sourceId: ids.train,
          testDatasetId: ids.test,
          name: "poisoned",
          attack: { name: "badnet_grid", target: 0, ratio: 0.2, seed: 4 },
        },
      },
    );
    const payload = res.data?.poisonDataset;
    assert.ok(payload, JSON.stringify(res.errors));
    const poisoned = await datasetWhenSettled(app, app.key, payload.dataset.id);
    const asr = await datasetWhenSettled(app, app.key, payload.asrTestDataset.id);
    assert.equal(poisoned.status, "READY", String(poisoned.failureReason));
    assert.equal(asr.status, "READY", String(asr.failureReason));
    assert.equal(poisoned.count, 600);
    // The ASR set holds the test images whose class is not the target, triggered.
    assert.ok((asr.count as number) > 0 && (asr.count as number) < 120, `ASR set of ${asr.count}`);
    const rows = await app.db.query("SELECT processing_attempt FROM datasets WHERE id = $1", [
      payload.dataset.id,
    ]);
    assert.equal(rows[0].processing_attempt, 1);
  });

  it("poisonDataset refuses a ratio the attack cannot reach (never capping it) and stores nothing", async () => {
    const source = await gql<{ dataset: { count: number; classHistogram: number[] } }>(
      app.url as string,
      app.key,
      `query($id: ID!) { dataset(id: $id) { count classHistogram } }`,
      { id: ids.train },
    );
    assert.ok(source.data?.dataset, JSON.stringify(source.errors));
    const { count, classHistogram } = source.data?.dataset ?? { count: 0, classHistogram: [] };
    const inTarget = classHistogram[1] as number;
    const listed = async () =>
      (
        await gql<{ datasets: { edges: unknown[] } }>(
          app.url as string,
          app.key,
          `{ datasets(first: 100) { edges { cursor } } }`,
        )
      ).data?.datasets.edges.length;
    const before = await listed();
    const cases: [Record<string, unknown>, RegExp][] = [
      // SIG is clean-label: one image more than the target class holds.
      [
        { name: "sig", target: 1, ratio: (inTarget + 1) / count },
        new RegExp(`only poison the ${inTarget} images of the target class 1`),
      ],
      // Dirty-label: every image, though the target class's own cannot be relabelled to it.
      [
        { name: "badnet_grid", target: 1, ratio: 1 },
        new RegExp(`only ${count - inTarget} images are not of the target class 1`),
      ],
      [{ name: "blend", target: 1, ratio: 0.5 / count }, /poisons no image/],
    ];
    for (const [attack, message] of cases) {
      const res = await gql(
        app.url as string,
        app.key,
        `mutation($input: PoisonDatasetInput!) { poisonDataset(input: $input) { dataset { id } } }`,
        { input: { sourceId: ids.train, attack } },
      );
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(res));
      assert.equal(res.errors?.[0]?.extensions?.field, "attack.ratio");
      assert.match(res.errors?.[0]?.message as string, message);
    }
    assert.equal(await listed(), before);
  });

  it("requests without a valid key are refused with UNAUTHENTICATED", async () => {
    const res = await gql(app.url as string, null, "{ viewer { id } }");
    assert.equal(res.errors?.[0]?.extensions?.code, "UNAUTHENTICATED");
    const bad = await gql(app.url as string, "td_nope", "{ viewer { id } }");
    assert.equal(bad.errors?.[0]?.extensions?.code, "UNAUTHENTICATED");
  });

  it("launches T&R, reports metrics and serves the artifacts; launch is idempotent", async () => {
    const input = {
      method: "TRAP_AND_REPLACE",
      architecture: "small-cnn",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
      asrTestDatasetId: ids.asr,
      target: 0,
      hyperparameters: { stage1Epochs: 2, stage2Epochs: 2, batchSize: 64, previewCount: 2 },
      idempotencyKey: "flow-1",
    };
    const launch = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id status } }`;
    const first = await gql<{ launchTraining: { id: string } }>(app.url as string, app.key, launch, {
      input,
    });
    assert.equal(first.errors, undefined, JSON.stringify(first.errors));
    const id = first.data?.launchTraining.id as string;
    const again = await gql<{ launchTraining: { id: string } }>(app.url as string, app.key, launch, {
      input,
    });
    assert.equal(again.data?.launchTraining.id, id);
    const changed = await gql(app.url as string, app.key, launch, { input: { ...input, seed: 5 } });
    assert.equal(changed.errors?.[0]?.extensions?.code, "CONFLICT");

    const job = await jobWhen(app, app.key, id, (j) => ["SUCCEEDED", "FAILED"].includes(j.status as string));
    assert.equal(job.status, "SUCCEEDED", JSON.stringify(job.error));
    const metrics = job.metrics as Record<string, number>;
    for (const k of ["asr", "ca", "mse", "stage1Asr", "stage1Ca"])
      assert.ok(metrics[k] !== null && (metrics[k] as number) >= 0 && (metrics[k] as number) <= 1, k);
    const path = (job.transitions as { to: string }[]).map((t) => t.to);
    assert.deepEqual(path, ["VALIDATING", "QUEUED", "STARTING", "RUNNING", "UPLOADING", "SUCCEEDED"]);
    const artifacts = job.artifacts as {
      kind: string;
      sha256: string;
      sizeBytes: number;
      downloadUrl: string;
    }[];
    assert.deepEqual(
      new Set(artifacts.map((a) => a.kind)),
      new Set(["model", "config", "metadata", "onnx", "preview", "health", "bundle"]),
    );
    // The health report travels as two artifacts of kind "health": the JSON and its PNG summary.
    const reports = await Promise.all(
      artifacts
        .filter((a) => a.kind === "health")
        .map(async (a) => Buffer.from(await (await fetch(a.downloadUrl)).arrayBuffer())),
    );
    const report = JSON.parse(reports.find((b) => b[0] === 0x7b)?.toString() ?? "null");
    assert.ok(["poisoned", "clean", "inconclusive"].includes(report.verdict));
    assert.ok(Array.isArray(report.suspicious) && report.evidence.flaggedShare.length > 0);
    const model = artifacts.find((a) => a.kind === "model");
    assert.ok(model);
    const bytes = Buffer.from(await (await fetch(model.downloadUrl)).arrayBuffer());
    assert.equal(bytes.length, model.sizeBytes);
    assert.equal(sha256(bytes), model.sha256);
  });

  it("another tenant sees none of it", async () => {
    const ds = await gql<{ dataset: unknown; datasets: { edges: unknown[] }; jobs: { edges: unknown[] } }>(
      app.url as string,
      otherKey,
      `query($id: ID!) { dataset(id: $id) { id } datasets { edges { cursor } } jobs { edges { cursor } } }`,
      { id: ids.train },
    );
    assert.equal(ds.data?.dataset, null);
    assert.equal(ds.data?.datasets.edges.length, 0);
    assert.equal(ds.data?.jobs.edges.length, 0);
    const launch = await gql(
      app.url as string,
      otherKey,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
      {
        input: {
          method: "NO_DEFENSE",
          trainDatasetId: ids.train,
          holdoutDatasetId: ids.holdout,
          testDatasetId: ids.test,
          idempotencyKey: "steal",
        },
      },
    );
    assert.equal(launch.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
  });

  it("bad launches are typed errors that name the field", async () => {
    const base = {
      method: "NO_DEFENSE",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
    };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, method: "MAGIC" }, "method"],
      [{ ...base, hyperparameters: { lambda1: 3 } }, "hyperparameters.lambda1"],
      [{ ...base, hyperparameters: { epochs: -1 } }, "hyperparameters.epochs"],
      [{ ...base, hyperparameters: { constructor: 1 } }, "hyperparameters.constructor"],
      [{ ...base, hyperparameters: JSON.parse('{"__proto__": {"epochs": 1}}') }, "hyperparameters.__proto__"],
      [
        { ...base, target: 0, attack: { name: "blend", target: 0, params: { alpha: 2 } } },
        "attack.params.alpha",
      ],
      [{ ...base, target: 1, attack: { name: "blend", target: 0 } }, "target"],
      [{ ...base, resources: { gpus: 1 } }, "resources.gpus"],
      [{ ...base, resources: { accelerator: "GPU", gpus: 3 } }, "resources.gpus"],
      [{ ...base, resources: { accelerator: "CPU", gpu: true } }, "resources.gpu"],
      [{ ...base, resources: { maxRuntimeSeconds: 0 } }, "resources.maxRuntimeSeconds"],
      [{ ...base, trainDatasetId: ids.test }, "trainDatasetId"],
      [{ ...base, asrTestDatasetId: ids.asr }, "target"],
    ];
    for (const [input, field] of cases) {
      const res = await gql(
        app.url as string,
        app.key,
        `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
        { input: { ...input, idempotencyKey: `bad-${field}` } },
      );
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", field);
      assert.equal(res.errors?.[0]?.extensions?.field, field);
    }
  });

  it("a job past its maxRuntimeSeconds is stopped with a checkpoint and FAILED with MAX_RUNTIME_EXCEEDED", async () => {
    const res = await gql<{ launchTraining: { id: string; resources: Record<string, unknown> } }>(
      app.url as string,
      app.key,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id resources { accelerator gpus maxRuntimeSeconds } } }`,
      {
        input: {
          method: "NO_DEFENSE",
          trainDatasetId: ids.train,
          holdoutDatasetId: ids.holdout,
          testDatasetId: ids.test,
          hyperparameters: { epochs: 500, batchSize: 16 },
          resources: { accelerator: "CPU", maxRuntimeSeconds: 3 },
          idempotencyKey: "runtime-cap",
        },
      },
    );
    const launched = res.data?.launchTraining;
    assert.ok(launched, JSON.stringify(res.errors));
    assert.deepEqual(launched.resources, { accelerator: "CPU", gpus: null, maxRuntimeSeconds: 3 });
    const job = await waitFor("the capped job to end", async () => {
      const rows = await app.db.query(
        "SELECT status, error, checkpoint_key FROM training_jobs WHERE id = $1",
        [launched.id],
      );
      return ["SUCCEEDED", "FAILED", "CANCELLED"].includes(rows[0].status) ? rows[0] : null;
    });
    assert.equal(job.status, "FAILED");
    assert.equal(job.error.code, "MAX_RUNTIME_EXCEEDED");
    assert.ok(job.checkpoint_key, "the checkpoint is kept");
  });

  it("an upload whose bytes do not match the declared sha256 fails with a reason", async () => {
    const bytes = Buffer.from("not what was declared");
    const created = await gql<{
      createDatasetUpload: {
        dataset: { id: string };
        uploads: { url: string; headers: Record<string, string> }[];
      };
    }>(
      app.url as string,
      app.key,
      `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id } uploads { url headers } } }`,
      {
        input: { name: "bad", role: "TRAIN", format: "NPZ", sizeBytes: bytes.length, sha256: "0".repeat(64) },
      },
    );
    const payload = created.data?.createDatasetUpload;
    assert.ok(payload, JSON.stringify(created.errors));
    await fetch(payload.uploads[0]?.url as string, {
      method: "PUT",
      headers: payload.uploads[0]?.headers,
      body: new Uint8Array(bytes),
    });
    await gql(app.url as string, app.key, `mutation($id: ID!) { completeDatasetUpload(id: $id) { id } }`, {
      id: payload.dataset.id,
    });
    const ds = (await datasetWhenSettled(app, app.key, payload.dataset.id)) as Record<string, string>;
    assert.equal(ds.status, "FAILED");
    assert.match(ds.failureReason as string, /sha256/i);
  });

  it("cancelling a running job stores its checkpoint and ends CANCELLED; deleting its data is refused meanwhile", async () => {
    const input = {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
      hyperparameters: { epochs: 400, batchSize: 32 },
      idempotencyKey: "cancel-me",
    };
    const res = await gql<{ launchTraining: { id: string } }>(
      app.url as string,
      app.key,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
      { input },
    );
    const id = res.data?.launchTraining.id as string;
    await jobWhen(app, app.key, id, (j) => j.status === "RUNNING" && Boolean(j.progress));
    const del = await gql(app.url as string, app.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, {
      id: ids.train,
    });
    assert.equal(del.errors?.[0]?.extensions?.code, "CONFLICT");
    const cancel = await gql<{ cancelJob: { status: string } }>(
      app.url as string,
      app.key,
      `mutation($id: ID!) { cancelJob(id: $id) { status } }`,
      { id },
    );
    assert.equal(cancel.data?.cancelJob.status, "CANCELLING");
    const job = await jobWhen(
      app,
      app.key,
      id,
      (j) => j.status === "CANCELLED" || j.status === "FAILED",
      60_000,
    );
    assert.equal(job.status, "CANCELLED");
    const rows = await app.db.query("SELECT checkpoint_key FROM training_jobs WHERE id = $1", [id]);
    assert.ok(rows[0].checkpoint_key && (await app.store.stat(rows[0].checkpoint_key)));
  });
});
