import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gql, makeDatasets, startTestApp, uploadNpyPair } from "../helpers/app.ts";

const LAUNCH = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id status } }`;

describe("per-tenant limits", () => {
  it("a tenant with TRAPDOOR_MAX_LIVE_JOBS live jobs gets QUOTA_EXCEEDED, and room again once one ends", async () => {
    // The worker ingests only: training jobs stay QUEUED (live).
    const app = await startTestApp({ TRAPDOOR_MAX_LIVE_JOBS: "2", TRAPDOOR_WORKER_QUEUES: "ingest" });
    try {
      const url = app.url as string;
      const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-quota-")), {
        nTrain: 100,
        nHoldout: 20,
        nTest: 20,
      });
      const input = {
        method: "NO_DEFENSE",
        trainDatasetId: await uploadNpyPair(url, app.key, data.train, "TRAIN"),
        holdoutDatasetId: await uploadNpyPair(url, app.key, data.holdout, "HOLDOUT"),
        testDatasetId: await uploadNpyPair(url, app.key, data.test, "TEST"),
      };
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
});
