import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { updateRunning } from "../../src/db/jobs.ts";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import type { App } from "../../src/main.ts";
import {
  gql,
  makeDatasets,
  startReplica,
  startTestApp,
  subscribe,
  uploadNpyPair,
  waitFor,
} from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

interface WatchedJob {
  jobUpdated: {
    id: string;
    status: string;
    progress: { stage: string; fraction: number } | null;
    metrics: { asr: number | null; ca: number | null; mse: number | null } | null;
    transitions: { to: string }[];
  };
}

const WATCH = `subscription($id: ID!) { jobUpdated(id: $id) { id status progress { stage fraction }
  metrics { asr ca mse } transitions { to } } }`;
const LAUNCH = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id status } }`;

/** Two API replicas on one database: A runs the worker, B only serves subscribers. */
describe("jobUpdated subscription across API replicas (LISTEN/NOTIFY)", () => {
  let a: TestApp;
  let b: App;
  let ids: Record<string, string>;
  let otherKey: string;
  let finishedJob: string;

  const launch = async (idempotencyKey: string, extra: Record<string, unknown> = {}) => {
    const res = await gql<{ launchTraining: { id: string } }>(a.url as string, a.key, LAUNCH, {
      input: {
        method: "NO_DEFENSE",
        architecture: "small-cnn",
        trainDatasetId: ids.train,
        holdoutDatasetId: ids.holdout,
        testDatasetId: ids.test,
        hyperparameters: { epochs: 2, batchSize: 64 },
        idempotencyKey,
        ...extra,
      },
    });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data?.launchTraining.id as string;
  };

  before(async () => {
    a = await startTestApp({ TRAPDOOR_AUTOSCALED_QUEUES: "gpu" });
    b = await startReplica(a, { api: true, worker: false }, { TRAPDOOR_AUTOSCALED_QUEUES: "gpu" });
    const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-data-")), {
      nTrain: 300,
      nHoldout: 80,
      nTest: 80,
    });
    ids = {
      train: await uploadNpyPair(a.url as string, a.key, data.train, "TRAIN"),
      holdout: await uploadNpyPair(a.url as string, a.key, data.holdout, "HOLDOUT"),
      test: await uploadNpyPair(a.url as string, a.key, data.test, "TEST"),
      asr: await uploadNpyPair(a.url as string, a.key, data.asr, "ASR_TEST"),
    };
    const other = await createTenant(a.db, "other");
    otherKey = (await createApiKey(a.db, other.id, "k")).key;
  });

  after(async () => {
    await b?.stop();
    await a?.cleanup();
  });

  it("a subscriber on replica B follows a job that replica A's worker runs, to SUCCEEDED", {
    timeout: 180_000,
  }, async () => {
    const id = await launch("replicas-1", { asrTestDatasetId: ids.asr, target: 0 });
    const sub = subscribe<WatchedJob>(b.url as string, a.key, WATCH, { id });
    const end = await sub.ended;
    assert.deepEqual(end, { completed: true });
    const jobs = sub.results.map((r) => {
      assert.equal(r.errors, undefined, JSON.stringify(r.errors));
      return r.data?.jobUpdated as WatchedJob["jobUpdated"];
    });
    assert.ok(jobs.every((j) => j.id === id));
    // The current job first, then changes: more than one result, and a live state seen before the end.
    assert.ok(jobs.length >= 3, `only ${jobs.length} results`);
    assert.ok(["QUEUED", "STARTING", "RUNNING"].includes(jobs[0]?.status as string), jobs[0]?.status);
    assert.ok(
      jobs.some((j) => j.status === "RUNNING" && j.progress && j.progress.fraction > 0),
      "no RUNNING result with progress",
    );
    const last = jobs.at(-1) as WatchedJob["jobUpdated"];
    assert.equal(last.status, "SUCCEEDED");
    assert.equal(last.transitions.at(-1)?.to, "SUCCEEDED");
    for (const name of ["asr", "ca"] as const) assert.equal(typeof last.metrics?.[name], "number", name);
    assert.equal(jobs.filter((j) => j.status === "SUCCEEDED").length, 1, "nothing after the terminal status");
    finishedJob = id;
  });

  it("jobsUpdated follows every job of the tenant on another replica, and none of another tenant's", {
    timeout: 180_000,
  }, async () => {
    const ALL = `subscription { jobsUpdated { id status progress { fraction } } }`;
    type All = { jobsUpdated: { id: string; status: string } };
    const mine = subscribe<All>(b.url as string, a.key, ALL);
    const theirs = subscribe<All>(b.url as string, otherKey, ALL);
    await new Promise((r) => setTimeout(r, 500)); // both subscribed before anything changes
    const id = await launch("tenant-feed-1");
    await mine.waitFor(
      (r) => r.data?.jobsUpdated.id === id && r.data.jobsUpdated.status === "SUCCEEDED",
      120_000,
    );
    const statuses = mine.results
      .filter((r) => r.data?.jobsUpdated.id === id)
      .map((r) => r.data?.jobsUpdated.status);
    assert.ok(statuses.includes("RUNNING") || statuses.includes("QUEUED"), JSON.stringify(statuses));
    assert.equal(theirs.results.length, 0, "another tenant sees nothing of it");
    await mine.close();
    await theirs.close();
  });

  it("a finished job yields its current state once and completes", { timeout: 180_000 }, async () => {
    const sub = subscribe<WatchedJob>(b.url as string, a.key, WATCH, { id: finishedJob });
    assert.deepEqual(await sub.ended, { completed: true });
    assert.deepEqual(
      sub.results.map((r) => r.data?.jobUpdated.status),
      ["SUCCEEDED"],
    );
  });

  it("updates written through replica A's services reach B, also after B's LISTEN connection is cut", {
    timeout: 180_000,
  }, async () => {
    // The gpu queue has no worker here, so the job waits in QUEUED for the writes below.
    const id = await launch("replicas-2", { resources: { gpu: true } });
    const sub = subscribe<WatchedJob>(b.url as string, a.key, WATCH, { id });
    await sub.waitFor((r) => r.data?.jobUpdated.status === "QUEUED");

    await updateRunning(a.db, id, { progress: { stage: "train", fraction: 0.25 } });
    await sub.waitFor((r) => r.data?.jobUpdated.progress?.fraction === 0.25);

    const listener = b.jobUpdates;
    assert.ok(listener);
    const pid = listener.backendPid;
    assert.ok(pid);
    const [killed] = await a.db.query("SELECT pg_terminate_backend($1) AS ok", [pid]);
    assert.equal(killed.ok, true);
    await waitFor(
      "B's listener to reconnect",
      async () => listener.reconnectCount === 1 && listener.listening,
    );
    assert.notEqual(listener.backendPid, pid);

    await updateRunning(a.db, id, { progress: { stage: "train", fraction: 0.5 } });
    await sub.waitFor((r) => r.data?.jobUpdated.progress?.fraction === 0.5);

    const users = await a.db.query("SELECT tenant_id FROM training_jobs WHERE id = $1", [id]);
    await a.jobs.cancel(users[0].tenant_id, id);
    assert.deepEqual(await sub.ended, { completed: true });
    assert.equal(sub.results.at(-1)?.data?.jobUpdated.status, "CANCELLED");
  });

  it("refuses subscribers without a valid key with UNAUTHENTICATED", { timeout: 180_000 }, async () => {
    for (const key of [null, "td_not-a-key"]) {
      const sub = subscribe(b.url as string, key, WATCH, { id: finishedJob });
      const end = await sub.ended;
      assert.equal(end.completed, false);
      const errors = end.error as { extensions?: { code?: string } }[];
      assert.equal(errors[0]?.extensions?.code, "UNAUTHENTICATED", JSON.stringify(errors));
      assert.equal(sub.results.length, 0);
      await sub.close();
    }
  });

  it("another tenant's job, an unknown id and a malformed id are NOT_FOUND, as for queries", {
    timeout: 180_000,
  }, async () => {
    for (const [key, id] of [
      [otherKey, finishedJob],
      [a.key, "00000000-0000-4000-8000-000000000000"],
      [a.key, "nope"],
    ] as const) {
      const sub = subscribe(b.url as string, key, WATCH, { id });
      assert.deepEqual((await sub.ended).completed, true);
      assert.equal(sub.results.length, 1);
      assert.equal(sub.results[0]?.errors?.[0]?.extensions?.code, "NOT_FOUND", JSON.stringify(sub.results));
      assert.equal(sub.results[0]?.data, undefined);
      await sub.close();
    }
  });

  it("a subscription sent over HTTP is refused, pointing at the WebSocket", { timeout: 60_000 }, async () => {
    const res = await gql(b.url as string, a.key, WATCH, { id: finishedJob });
    assert.equal(res.data, undefined);
    assert.match(res.errors?.[0]?.message ?? "", /over WebSocket/);
  });

  it("applies the query cost limit to subscriptions", { timeout: 180_000 }, async () => {
    const fields = Array.from({ length: 5001 }, (_, i) => `f${i}: id`).join(" ");
    const sub = subscribe(
      b.url as string,
      a.key,
      `subscription($id: ID!) { jobUpdated(id: $id) { ${fields} } }`,
      {
        id: finishedJob,
      },
    );
    const end = await sub.ended;
    const errors = end.error as { message: string; extensions?: { code?: string } }[];
    assert.equal(errors[0]?.extensions?.code, "BAD_USER_INPUT");
    assert.match(errors[0]?.message ?? "", /cost/);
  });

  it("stopping replica B closes its subscribers' sockets and its LISTEN connection", {
    timeout: 180_000,
  }, async () => {
    const id = await launch("replicas-3", { resources: { gpu: true } });
    const sub = subscribe<WatchedJob>(b.url as string, a.key, WATCH, { id });
    await sub.waitFor((r) => r.data?.jobUpdated.status === "QUEUED");
    const listeners = async () =>
      Number(
        (
          await a.db.query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'trapdoor-job-updates'",
          )
        )[0].n,
      );
    assert.equal(await listeners(), 2);
    const started = Date.now();
    await b.stop();
    assert.ok(Date.now() - started < 5000, `stop took ${Date.now() - started} ms`);
    const end = await sub.ended;
    assert.equal(end.completed, false);
    assert.equal((end.error as { code?: number }).code, 1001);
    await waitFor("B's LISTEN connection to go", async () => (await listeners()) === 1, 10_000);
    assert.equal(b.jobUpdates?.listening, false);
    await a.jobs.cancel(
      (await a.db.query("SELECT tenant_id FROM training_jobs WHERE id = $1", [id]))[0].tenant_id,
      id,
    );
  });
});
