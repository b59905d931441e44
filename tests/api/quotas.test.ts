import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { datasetIds, gql, makeDatasets, startTestApp, uploadJobDatasets } from "../helpers/app.ts";

/** Small READY datasets (ingested by the app's worker) as a NO_DEFENSE launch input. */
async function noDefenseInput(app: Awaited<ReturnType<typeof startTestApp>>) {
  const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-limits-")), {
    nTrain: 100,
    nHoldout: 20,
    nTest: 20,
  });
  return { method: "NO_DEFENSE", ...datasetIds(await uploadJobDatasets(app.url as string, app.key, data)) };
}

const LAUNCH = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id status } }`;

describe("per-tenant limits and GPU pools", () => {
  it("a tenant with TRAPDOOR_MAX_LIVE_JOBS live jobs gets QUOTA_EXCEEDED, and room again once one ends", async () => {
    // The worker ingests only: training jobs stay QUEUED (live).
    const app = await startTestApp({
      TRAPDOOR_MAX_LIVE_JOBS: "2",
      TRAPDOOR_WORKER_QUEUES: "ingest",
      TRAPDOOR_AUTOSCALED_QUEUES: "cpu,gpu,gpu-4",
    });
    try {
      const url = app.url as string;
      const input = await noDefenseInput(app);
      const launch = (key: string) =>
        gql<{ launchTraining: { id: string } }>(url, app.key, LAUNCH, {
          input: { ...input, idempotencyKey: key },
        });
      const first = await launch("q1");
      await launch("q2");
      const third = await launch("q3");
      assert.equal(third.errors?.[0]?.extensions?.code, "QUOTA_EXCEEDED", JSON.stringify(third));
      assert.equal(third.errors?.[0]?.extensions?.limit, "liveJobs");
      assert.equal(third.errors?.[0]?.extensions?.max, 2);
      // The same launch again is the same job, not a new one: idempotency comes before the limit.
      assert.equal((await launch("q1")).data?.launchTraining.id, first.data?.launchTraining.id);
      await gql(url, app.key, `mutation($id: ID!) { cancelJob(id: $id) { status } }`, {
        id: first.data?.launchTraining.id,
      });
      const fourth = await launch("q4");
      assert.ok(fourth.data?.launchTraining.id, JSON.stringify(fourth.errors));
    } finally {
      await app.cleanup();
    }
  });

  it("a job asking for 4 GPUs goes to the gpu-4 queue when the deployment offers 4; other counts are refused", async () => {
    const app = await startTestApp({
      TRAPDOOR_GPU_COUNTS: "1,4",
      TRAPDOOR_WORKER_QUEUES: "ingest",
      TRAPDOOR_AUTOSCALED_QUEUES: "cpu,gpu,gpu-4",
    });
    try {
      const url = app.url as string;
      const input = await noDefenseInput(app);
      const launch = (gpus: number, key: string) =>
        gql<{ launchTraining: { id: string; resources: Record<string, unknown> } }>(
          url,
          app.key,
          `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id resources { accelerator gpus } } }`,
          { input: { ...input, resources: { accelerator: "GPU", gpus }, idempotencyKey: key } },
        );
      const four = await launch(4, "four");
      assert.deepEqual(four.data?.launchTraining.resources, { accelerator: "GPU", gpus: 4 });
      const [row] = await app.db.query("SELECT queue FROM training_jobs WHERE id = $1", [
        four.data?.launchTraining.id,
      ]);
      assert.equal(row.queue, "gpu-4");
      const [{ n }] = await app.db.query("SELECT count(*) AS n FROM pgboss.job WHERE name = 'gpu-4'");
      assert.equal(Number(n), 1, "the message waits on the gpu-4 queue");
      const one = await launch(1, "one");
      const [oneRow] = await app.db.query("SELECT queue FROM training_jobs WHERE id = $1", [
        one.data?.launchTraining.id,
      ]);
      assert.equal(oneRow.queue, "gpu");
      const two = await launch(2, "two");
      assert.equal(two.errors?.[0]?.extensions?.field, "resources.gpus");
    } finally {
      await app.cleanup();
    }
  });
});
