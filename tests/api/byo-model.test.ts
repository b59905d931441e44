/**
 * Bring your own model: upload a safetensors file of a catalog architecture, have a worker check
 * it tensor by tensor (real trainer), evaluate it, and defend it with ANP without training a
 * backdoored model first; the defended model comes back with the usual artifacts.
 */

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  datasetIds,
  gql,
  launchJob,
  makeDatasets,
  sha256,
  startTestApp,
  uploadJobDatasets,
  uploadNpyPair,
  waitFor,
} from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

interface Job {
  id: string;
  status: string;
  method: string;
  error: { code: string; message: string } | null;
  metrics: { asr: number | null; ca: number | null; all: Record<string, unknown> } | null;
  artifacts: { kind: string; format: string; downloadUrl: string }[];
}
interface Model {
  id: string;
  status: string;
  failureCode: string | null;
  failureReason: string | null;
  tensors: number | null;
  parameters: number | null;
  dtype: string;
}

const JOB = `id status method error { code message } metrics { asr ca all } artifacts { kind format downloadUrl }`;
const MODEL = `id status failureCode failureReason tensors parameters dtype`;

describe("bring your own model", () => {
  let app: TestApp;
  let ids: Record<"train" | "holdout" | "test", string>;
  let asr: string;
  let trained: Job;
  let weights: Buffer;
  let modelId: string;

  const job = async (id: string) => {
    const res = await gql<{ job: Job }>(
      app.url as string,
      app.key,
      `query($id: ID!) { job(id: $id) { ${JOB} } }`,
      { id },
    );
    return res.data?.job as Job;
  };
  const ended = (id: string) =>
    waitFor(
      `job ${id}`,
      async () => {
        const j = await job(id);
        return ["SUCCEEDED", "FAILED", "CANCELLED"].includes(j.status) ? j : null;
      },
      240_000,
    );
  /** Declare `bytes` as a model of `declared` (over small-cnn, 16x16x1, 4 classes) and PUT them; its id. */
  const declareModel = async (bytes: Buffer, declared: Record<string, unknown> = {}) => {
    const res = await gql<{
      createModelUpload: {
        model: { id: string };
        upload: { url: string; method: string; headers: Record<string, string> };
      };
    }>(
      app.url as string,
      app.key,
      `mutation($input: CreateModelUploadInput!) { createModelUpload(input: $input) { model { id status } upload { url method headers } } }`,
      {
        input: {
          name: "mine",
          architecture: "small-cnn",
          inputShape: { height: 16, width: 16, channels: 1 },
          numClasses: 4,
          dtype: "FLOAT32",
          sizeBytes: bytes.length,
          sha256: sha256(bytes),
          ...declared,
        },
      },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const { model, upload } = (res.data as NonNullable<typeof res.data>).createModelUpload;
    const put = await fetch(upload.url, {
      method: upload.method,
      headers: upload.headers,
      body: new Uint8Array(bytes),
    });
    assert.ok(put.ok, `PUT ${put.status}`);
    return model.id;
  };
  /** Upload `bytes` as a model of `declared` and return it once the worker has decided. */
  const uploadModel = async (bytes: Buffer, declared: Record<string, unknown> = {}) => {
    const model = { id: await declareModel(bytes, declared) };
    const done = await gql(
      app.url as string,
      app.key,
      `mutation($id: ID!) { completeModelUpload(id: $id) { id status } }`,
      { id: model.id },
    );
    assert.equal(done.errors, undefined, JSON.stringify(done.errors));
    return waitFor(`model ${model.id}`, async () => {
      const got = await gql<{ model: Model }>(
        app.url as string,
        app.key,
        `query($id: ID!) { model(id: $id) { ${MODEL} } }`,
        { id: model.id },
      );
      const m = got.data?.model as Model;
      return m.status === "READY" || m.status === "FAILED" ? m : null;
    });
  };

  before(async () => {
    app = await startTestApp();
    const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-byo-")), {
      nTrain: 600,
      nHoldout: 120,
      nTest: 120,
    });
    ids = await uploadJobDatasets(app.url as string, app.key, data);
    asr = await uploadNpyPair(app.url as string, app.key, data.asr, "ASR_TEST");
    // "Elsewhere": a backdoored model trained without defense, whose weights the user downloads.
    const id = await launchJob(app.url as string, app.key, {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      ...datasetIds(ids),
      asrTestDatasetId: asr,
      target: 0,
      hyperparameters: { epochs: 2, batchSize: 64, lr: 3e-3, evalEvery: 0 },
      idempotencyKey: "elsewhere",
    });
    trained = await ended(id);
    assert.equal(trained.status, "SUCCEEDED", JSON.stringify(trained.error));
    const file = trained.artifacts.find((a) => a.format === "safetensors");
    weights = Buffer.from(await (await fetch(file?.downloadUrl as string)).arrayBuffer());
  });

  after(async () => {
    await app?.cleanup();
  });

  it("checks an uploaded model on a worker and makes it READY", async () => {
    const model = await uploadModel(weights);
    assert.equal(model.status, "READY", String(model.failureReason));
    assert.ok((model.tensors ?? 0) > 4 && (model.parameters ?? 0) > 1000);
    assert.equal(model.dtype, "FLOAT32");
    modelId = model.id;
  });

  it("refuses a model that does not fit what it declares, naming the tensors", async () => {
    const wrongClasses = await uploadModel(weights, { numClasses: 10 });
    assert.deepEqual([wrongClasses.status, wrongClasses.failureCode], ["FAILED", "MODEL_MISMATCH"]);
    assert.match(String(wrongClasses.failureReason), /tensor \S+ has shape \[4.*needs \[10/);
    const wrongDtype = await uploadModel(weights, { dtype: "FLOAT16" });
    assert.match(String(wrongDtype.failureReason), /is float32, declared F16/);
    const junk = await uploadModel(Buffer.from("this is not a safetensors file at all"));
    assert.match(String(junk.failureReason), /not a valid safetensors file/);
    const bad = await gql(
      app.url as string,
      app.key,
      `mutation($input: CreateModelUploadInput!) { createModelUpload(input: $input) { model { id } } }`,
      {
        input: {
          name: "x",
          architecture: "nope",
          inputShape: { height: 16, width: 16, channels: 1 },
          numClasses: 4,
          dtype: "FLOAT32",
          sizeBytes: 10,
          sha256: "0".repeat(64),
        },
      },
    );
    assert.equal(bad.errors?.[0]?.extensions?.field, "architecture");
  });

  it("a check whose worker died goes back to the queue, and fails once its attempts are spent", async () => {
    const status = async (id: string) =>
      (
        await gql<{ model: Model }>(
          app.url as string,
          app.key,
          `query($id: ID!) { model(id: $id) { ${MODEL} } }`,
          { id },
        )
      ).data?.model as Model;
    // A worker claimed attempt `attempt` and died: VALIDATING, no heartbeat for a minute, no message left.
    const orphan = async (attempt: number, silentFor = "1 minute") => {
      const id = await declareModel(weights, { name: "orphan" });
      await app.db.query(
        "UPDATE models SET status = 'VALIDATING', processing_attempt = $2, heartbeat_at = now() - $3::interval WHERE id = $1",
        [id, attempt, silentFor],
      );
      return id;
    };
    // Waiting for its first check, a model counts in the poison queue's depth (operators' metrics).
    const before = (await app.jobs.queueDepths()).poison ?? 0;
    const waiting = await orphan(0, "0 seconds"); // not stale: no reaper takes it meanwhile
    assert.equal((await app.jobs.queueDepths()).poison, before + 1);
    await app.db.query("UPDATE models SET status = 'FAILED' WHERE id = $1", [waiting]);
    const retried = await orphan(1);
    const exhausted = await orphan(3);
    // This worker's own reaper may get there first; either way both end as below.
    await app.models.reapStale(30);
    assert.equal(
      (
        await waitFor("the retried check", async () => {
          const m = await status(retried);
          return m.status === "VALIDATING" ? null : m;
        })
      ).status,
      "READY",
    );
    const lost = await status(exhausted);
    assert.deepEqual([lost.status, lost.failureCode], ["FAILED", "WORKER_LOST"]);
  });

  it("evaluateModel measures CA, ASR and per-class accuracy without training", async () => {
    const res = await gql<{ evaluateModel: { id: string } }>(
      app.url as string,
      app.key,
      `mutation($input: EvaluateModelInput!) { evaluateModel(input: $input) { id } }`,
      {
        input: {
          modelId,
          testDatasetId: ids.test,
          asrTestDatasetId: asr,
          target: 0,
          idempotencyKey: "eval-1",
        },
      },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const evaluated = await ended(res.data?.evaluateModel.id as string);
    assert.equal(evaluated.status, "SUCCEEDED", JSON.stringify(evaluated.error));
    assert.equal(evaluated.method, "EVALUATE");
    assert.ok(
      Math.abs((evaluated.metrics?.ca ?? -1) - (trained.metrics?.ca ?? -2)) < 1e-6,
      "the same CA as the job that trained it",
    );
    assert.ok(Math.abs((evaluated.metrics?.asr ?? -1) - (trained.metrics?.asr ?? -2)) < 1e-6);
    const perClass = evaluated.metrics?.all.perClassAccuracy as number[] | undefined;
    assert.equal(perClass?.length, 4);
    assert.deepEqual(evaluated.artifacts, []);
  });

  it("ANP defends the uploaded model without pretraining and returns the usual artifacts", async () => {
    const id = await launchJob(app.url as string, app.key, {
      method: "ANP",
      ...datasetIds(ids),
      modelId,
      asrTestDatasetId: asr,
      target: 0,
      hyperparameters: { maskIterations: 20, maskBatchSize: 64 },
      idempotencyKey: "anp-byo",
    });
    const defended = await ended(id);
    assert.equal(defended.status, "SUCCEEDED", JSON.stringify(defended.error));
    const timings = defended.metrics?.all.timings as Record<string, number>;
    assert.equal(timings.pretrainSeconds, 0, JSON.stringify(timings));
    assert.ok(Math.abs((defended.metrics?.all.beforeCa as number) - (trained.metrics?.ca as number)) < 1e-6);
    assert.deepEqual([...new Set(defended.artifacts.map((a) => a.kind))].sort(), [
      "bundle",
      "config",
      "metadata",
      "model",
      "onnx",
    ]);
    const onnx = await fetch(defended.artifacts.find((a) => a.kind === "onnx")?.downloadUrl as string);
    assert.equal(onnx.status, 200);
    assert.ok((await onnx.arrayBuffer()).byteLength > 1000);
  });

  it("an earlier job's model is a starting point too (initJobId)", async () => {
    const res = await gql<{ evaluateModel: { id: string } }>(
      app.url as string,
      app.key,
      `mutation($input: EvaluateModelInput!) { evaluateModel(input: $input) { id } }`,
      { input: { initJobId: trained.id, testDatasetId: ids.test, idempotencyKey: "eval-job" } },
    );
    const evaluated = await ended(res.data?.evaluateModel.id as string);
    assert.equal(evaluated.status, "SUCCEEDED", JSON.stringify(evaluated.error));
    assert.ok(Math.abs((evaluated.metrics?.ca ?? -1) - (trained.metrics?.ca ?? -2)) < 1e-6);
  });

  it("refuses a starting model where it cannot be used", async () => {
    const launch = (input: Record<string, unknown>) =>
      gql(
        app.url as string,
        app.key,
        `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
        {
          input: {
            ...datasetIds(ids),
            idempotencyKey: `r-${JSON.stringify(input).length}-${Math.random()}`,
            ...input,
          },
        },
      );
    const cases: [Record<string, unknown>, string][] = [
      [{ method: "TRAP_AND_REPLACE", modelId }, "modelId"],
      [{ method: "ANP", modelId, initJobId: trained.id }, "modelId"],
      [{ method: "ANP", modelId: "00000000-0000-4000-8000-000000000000" }, "modelId"],
      [{ method: "ANP", modelId, architecture: "wrn16-1" }, "architecture"],
      [{ method: "EVALUATE", modelId }, "method"],
    ];
    for (const [input, field] of cases) {
      const res = await launch(input);
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(res.errors));
      assert.equal(res.errors?.[0]?.extensions?.field, field, JSON.stringify(res.errors));
    }
    const noModel = await gql(
      app.url as string,
      app.key,
      `mutation($input: EvaluateModelInput!) { evaluateModel(input: $input) { id } }`,
      {
        input: { testDatasetId: ids.test, idempotencyKey: "eval-none" },
      },
    );
    assert.equal(noModel.errors?.[0]?.extensions?.field, "modelId");
    const wrongRole = await gql(
      app.url as string,
      app.key,
      `mutation($input: EvaluateModelInput!) { evaluateModel(input: $input) { id } }`,
      {
        input: { modelId, testDatasetId: ids.train, idempotencyKey: "eval-role" },
      },
    );
    assert.equal(wrongRole.errors?.[0]?.extensions?.field, "testDatasetId");
  });
});
