/**
 * A platform's own handles on its jobs: `labels` and `externalId` at launch, on the job, and as
 * `jobs(filter: ...)` (label containment, external id equality, one tenant's jobs only).
 */

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import { datasetIds, gql, makeDatasets, startTestApp, uploadJobDatasets } from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const LAUNCH = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id labels externalId } }`;
const FIND = `query($filter: JobFilter) { jobs(first: 50, filter: $filter) { edges { node { id labels externalId } } } }`;

describe("job labels and externalId", () => {
  let app: TestApp;
  let ids: Record<"train" | "holdout" | "test", string>;
  let otherKey: string;
  const launched: Record<string, string> = {};

  const launch = (key: string, extra: Record<string, unknown>, idempotencyKey: string) =>
    gql<{ launchTraining: { id: string; labels: Record<string, string>; externalId: string | null } }>(
      app.url as string,
      key,
      LAUNCH,
      {
        input: {
          method: "NO_DEFENSE",
          architecture: "small-cnn",
          ...datasetIds(ids),
          hyperparameters: { epochs: 1 },
          // no GPU worker here: the jobs wait QUEUED, which is all this needs
          resources: { accelerator: "GPU" },
          idempotencyKey,
          ...extra,
        },
      },
    );
  const find = async (filter: Record<string, unknown>, key = app.key) => {
    const res = await gql<{ jobs: { edges: { node: { id: string } }[] } }>(app.url as string, key, FIND, {
      filter,
    });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return new Set(res.data?.jobs.edges.map((e) => e.node.id));
  };

  before(async () => {
    app = await startTestApp({ TRAPDOOR_AUTOSCALED_QUEUES: "gpu" });
    ids = await uploadJobDatasets(
      app.url as string,
      app.key,
      makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-labels-")), { nTrain: 120, nHoldout: 40, nTest: 40 }),
    );
    const runs: Array<[string, Record<string, unknown>]> = [
      ["a", { labels: { team: "vision", run: "a", "mlflow.org/experiment": "17" }, externalId: "ext-1" }],
      ["b", { labels: { team: "vision", run: "b" }, externalId: "ext-2" }],
      ["c", { labels: { team: "nlp" } }],
      ["plain", {}],
    ];
    for (const [name, extra] of runs) {
      const res = await launch(app.key, extra, `labels-${name}`);
      assert.equal(res.errors, undefined, JSON.stringify(res.errors));
      launched[name] = res.data?.launchTraining.id as string;
    }
    const other = await createTenant(app.db, "other");
    otherKey = (await createApiKey(app.db, other.id, "k")).key;
  });

  after(async () => {
    await app?.cleanup();
  });

  it("are stored with the job ({} and null when not given)", async () => {
    const res = await gql<{
      a: { labels: unknown; externalId: string };
      plain: { labels: unknown; externalId: null };
    }>(
      app.url as string,
      app.key,
      `query($a: ID!, $p: ID!) { a: job(id: $a) { labels externalId } plain: job(id: $p) { labels externalId } }`,
      { a: launched.a, p: launched.plain },
    );
    assert.deepEqual(res.data?.a, {
      labels: { team: "vision", run: "a", "mlflow.org/experiment": "17" },
      externalId: "ext-1",
    });
    assert.deepEqual(res.data?.plain, { labels: {}, externalId: null });
  });

  it("find jobs by every given label, by external id, or both; only the tenant's own", async () => {
    assert.deepEqual(await find({ labels: { team: "vision" } }), new Set([launched.a, launched.b]));
    assert.deepEqual(await find({ labels: { team: "vision", run: "b" } }), new Set([launched.b]));
    assert.deepEqual(await find({ labels: { team: "vision", run: "c" } }), new Set());
    assert.deepEqual(await find({ externalId: "ext-1" }), new Set([launched.a]));
    assert.deepEqual(await find({ externalId: "ext-1", labels: { run: "b" } }), new Set());
    assert.equal((await find({})).size, 4);
    assert.deepEqual(await find({ labels: { team: "vision" } }, otherKey), new Set());
    assert.deepEqual(await find({ externalId: "ext-1" }, otherKey), new Set());
  });

  it("refuse malformed labels and ids with the field at fault; nothing is stored", async () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ labels: ["team", "vision"] }, "labels"],
      [{ labels: { "a b": "x" } }, "labels.a b"],
      [{ labels: { "-edge": "x" } }, "labels.-edge"],
      [{ labels: { team: 7 } }, "labels.team"],
      [{ labels: { team: "x".repeat(257) } }, "labels.team"],
      [{ labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) }, "labels"],
      [{ externalId: "x".repeat(257) }, "externalId"],
    ];
    for (const [extra, field] of bad) {
      const res = await launch(app.key, extra, `bad-${field}-${JSON.stringify(extra).length}`);
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(extra).slice(0, 80));
      assert.equal(res.errors?.[0]?.extensions?.field, field);
    }
    const res = await gql(app.url as string, app.key, FIND, { filter: { labels: "team=vision" } });
    assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    assert.equal(res.errors?.[0]?.extensions?.field, "filter.labels");
    assert.equal((await find({})).size, 4);
  });

  it("operations shows each queue's waiting work, the caller's share and live workers", async () => {
    const OPS = `{ operations { queues { name waiting mine liveWorkers autoscaled } usage { liveJobs } quota { liveJobs } } }`;
    type Ops = {
      operations: {
        queues: { name: string; waiting: number; mine: number; liveWorkers: number; autoscaled: boolean }[];
        usage: { liveJobs: number };
      };
    };
    const mine = await gql<Ops>(app.url as string, app.key, OPS);
    assert.equal(mine.errors, undefined, JSON.stringify(mine.errors));
    const byName = new Map(mine.data?.operations.queues.map((q) => [q.name, q]));
    assert.ok((byName.get("gpu")?.waiting ?? 0) >= Object.keys(launched).length);
    assert.deepEqual(
      [
        byName.get("gpu")?.liveWorkers,
        byName.get("gpu")?.autoscaled,
        byName.get("cpu")?.liveWorkers,
        byName.get("cpu")?.autoscaled,
      ],
      [0, true, 1, false],
    );
    assert.equal(
      byName.get("gpu")?.mine,
      mine.data?.operations.usage.liveJobs,
      "every live job of this tenant waits on gpu",
    );
    const theirs = await gql<Ops>(app.url as string, otherKey, OPS);
    const gpu = theirs.data?.operations.queues.find((q) => q.name === "gpu");
    assert.deepEqual(
      [gpu?.mine, gpu?.waiting],
      [0, byName.get("gpu")?.waiting],
      "others see the depth, not whose it is",
    );
  });

  it("are part of the launch an idempotency key names", async () => {
    const again = await launch(
      app.key,
      { labels: { team: "vision", run: "b" }, externalId: "ext-2" },
      "labels-b",
    );
    assert.equal(again.data?.launchTraining.id, launched.b);
    const changed = await launch(app.key, { labels: { team: "audio" }, externalId: "ext-2" }, "labels-b");
    assert.equal(changed.errors?.[0]?.extensions?.code, "CONFLICT");
  });
});
