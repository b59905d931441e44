/**
 * Webhooks end to end: real state changes (upload, job, cancelled study) write outbox rows in
 * their own transactions, the dispatcher delivers them signed to a local receiver, retries a
 * failing one with backoff through pg-boss, never follows redirects, and refuses addresses it
 * must not reach, checking the address it connects to.
 */

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import { AddressPolicy } from "../../src/webhooks/address-policy.ts";
import { postJson, WebhookRefused } from "../../src/webhooks/post.ts";
import { verifySignature } from "../../src/webhooks/secrets.ts";
import {
  completeUpload,
  datasetIds,
  gql,
  launchJob,
  makeDatasets,
  npyPairParts,
  putUpload,
  startTestApp,
  uploadJobDatasets,
  uploadNpyPair,
  waitFor,
} from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: { id: string; event: string; data: Record<string, Record<string, unknown>> };
}

/** A receiver: /flaky answers 500 to the first request of each delivery id, then 200; /redirect answers 302. */
async function startReceiver(): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const failedOnce = new Set<string>();
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.push({ path, headers: req.headers, body, json: body ? JSON.parse(body) : null });
      const id = String(req.headers["trapdoor-delivery-id"]);
      if (path === "/flaky" && !failedOnce.has(id)) {
        failedOnce.add(id);
        res.writeHead(500).end("not yet");
      } else if (path === "/redirect") res.writeHead(302, { location: "/target" }).end();
      else res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

const CREATE = `mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { secret webhook { id url events } } }`;
const DELIVERIES = `query($id: ID!) { webhook(id: $id) { id deliveries(first: 50) { edges { node { id event status attempts lastError lastStatusCode payload } } } } }`;

describe("webhooks", () => {
  let app: TestApp;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let webhookId: string;
  let secret: string;
  let ids: Record<"train" | "holdout" | "test", string>;
  let data: Record<"train" | "holdout" | "test" | "asr", string>;

  const create = (url: string, events: string[]) =>
    gql<{ createWebhook: { secret: string; webhook: { id: string; url: string; events: string[] } } }>(
      app.url as string,
      app.key,
      CREATE,
      { input: { url, events } },
    );
  const deliveries = async (id: string) => {
    const res = await gql<{ webhook: { deliveries: { edges: { node: Record<string, unknown> }[] } } }>(
      app.url as string,
      app.key,
      DELIVERIES,
      { id },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data?.webhook.deliveries.edges.map((e) => e.node) ?? [];
  };
  const receivedFor = (event: string, where: (r: Received) => boolean = () => true) =>
    waitFor(
      `a ${event} delivery`,
      async () => receiver.received.find((r) => r.json?.event === event && where(r)),
      60_000,
    );

  before(async () => {
    receiver = await startReceiver();
    app = await startTestApp({
      TRAPDOOR_WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
      TRAPDOOR_WEBHOOK_ALLOW_HTTP: "true",
      TRAPDOOR_WEBHOOK_RETRY_LIMIT: "2",
      TRAPDOOR_WEBHOOK_RETRY_DELAY_SECONDS: "1",
      TRAPDOOR_AUTOSCALED_QUEUES: "gpu",
    });
    const res = await create(`${receiver.url}/flaky`, [
      "JOB_SUCCEEDED",
      "JOB_FAILED",
      "JOB_CANCELLED",
      "DATASET_READY",
      "DATASET_FAILED",
      "STUDY_DONE",
    ]);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    webhookId = res.data?.createWebhook.webhook.id as string;
    secret = res.data?.createWebhook.secret as string;
    data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-hooks-")), {
      nTrain: 120,
      nHoldout: 40,
      nTest: 40,
    });
    ids = await uploadJobDatasets(app.url as string, app.key, data);
  });

  after(async () => {
    await app?.cleanup();
    receiver?.server.close();
  });

  it("delivers DATASET_READY signed, with its delivery id, after retrying a failed attempt", async () => {
    assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
    const first = await receivedFor("DATASET_READY", (r) => r.json.data.dataset?.id === ids.train);
    const delivered = await waitFor("the retried delivery", async () => {
      const all = receiver.received.filter(
        (r) => r.headers["trapdoor-delivery-id"] === first.headers["trapdoor-delivery-id"],
      );
      return all.length >= 2 ? all : null;
    });
    for (const r of delivered) {
      assert.ok(
        verifySignature(String(r.headers["trapdoor-signature"]), r.body, secret),
        "signed with the secret",
      );
      assert.ok(!verifySignature(String(r.headers["trapdoor-signature"]), r.body, "whsec_other"));
      assert.equal(r.json.id, r.headers["trapdoor-delivery-id"]);
      assert.equal(r.headers["trapdoor-event"], "DATASET_READY");
    }
    assert.equal(delivered[0]?.body, delivered[1]?.body, "a retry sends the same body");
    const row = await waitFor("the delivery row", async () =>
      (await deliveries(webhookId)).find((d) => d.id === first.json.id && d.status === "DELIVERED"),
    );
    assert.deepEqual([row.attempts, row.lastStatusCode, row.lastError], [2, 200, null]);
    assert.equal((row.payload as { event: string }).event, "DATASET_READY");
  });

  it("delivers JOB_SUCCEEDED with the job's metrics, once per job", async () => {
    const id = await launchJob(app.url as string, app.key, {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      ...datasetIds(ids),
      hyperparameters: { epochs: 1, evalEvery: 0 },
      labels: { pipeline: "hooks" },
      idempotencyKey: "hook-job",
    });
    const got = await receivedFor("JOB_SUCCEEDED", (r) => r.json.data.job?.id === id);
    const job = got.json.data.job as Record<string, unknown>;
    assert.equal(job.status, "SUCCEEDED");
    assert.ok(typeof (job.metrics as { ca: number }).ca === "number");
    assert.deepEqual(job.labels, { pipeline: "hooks" });
    const rows = (await deliveries(webhookId)).filter(
      (d) => (d.payload as Received["json"]).data.job?.id === id,
    );
    assert.equal(rows.length, 1);
  });

  it("a cancelled study sends JOB_CANCELLED for each job and STUDY_DONE once", async () => {
    const res = await gql<{ launchStudy: { id: string; jobs: { id: string }[] } }>(
      app.url as string,
      app.key,
      `mutation($input: LaunchStudyInput!) { launchStudy(input: $input) { id jobs { id } } }`,
      {
        input: {
          methods: [{ method: "NO_DEFENSE", hyperparameters: { epochs: 1 } }],
          seeds: [0, 1],
          architecture: "small-cnn",
          ...datasetIds(ids),
          resources: { accelerator: "GPU" }, // no GPU worker here: the jobs wait until cancelled
          idempotencyKey: "hook-study",
        },
      },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const study = res.data?.launchStudy as { id: string; jobs: { id: string }[] };
    await gql(app.url as string, app.key, `mutation($id: ID!) { cancelStudy(id: $id) { id } }`, {
      id: study.id,
    });
    const done = await receivedFor("STUDY_DONE", (r) => r.json.data.study?.id === study.id);
    assert.equal(done.json.data.study?.status, "CANCELLED");
    for (const job of study.jobs) await receivedFor("JOB_CANCELLED", (r) => r.json.data.job?.id === job.id);
    await new Promise((r) => setTimeout(r, 500));
    const studyDone = new Set(
      receiver.received
        .filter((r) => r.json?.event === "STUDY_DONE")
        .map((r) => r.headers["trapdoor-delivery-id"]),
    );
    assert.equal(studyDone.size, 1);
  });

  it("follows no redirect: the delivery fails after its retries and the target is never called", async () => {
    const res = await create(`${receiver.url}/redirect`, ["DATASET_FAILED"]);
    const id = res.data?.createWebhook.webhook.id as string;
    // An upload that fails validation: labels that do not match the images.
    const parts = npyPairParts(data.train).map((p) =>
      p.name === "labels" ? { ...p, bytes: npyPairParts(data.test)[1]?.bytes as Buffer } : p,
    );
    const bad = await putUpload(app.url as string, app.key, { name: "bad", role: "TRAIN" }, parts);
    await completeUpload(app.url as string, app.key, bad);
    const failed = await waitFor(
      "the redirected delivery to fail",
      async () => (await deliveries(id)).find((d) => d.status === "FAILED"),
      60_000,
    );
    assert.equal(failed.attempts, 3); // the first and two retries
    assert.equal(failed.lastStatusCode, 302);
    assert.match(String(failed.lastError), /redirects are not followed/);
    assert.equal(receiver.received.filter((r) => r.path === "/target").length, 0);
  });

  it("rotating the secret signs with the new one and, for a grace period, the old one", async () => {
    const res = await gql<{ rotateWebhookSecret: { secret: string } }>(
      app.url as string,
      app.key,
      `mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret webhook { id } } }`,
      { id: webhookId },
    );
    const fresh = res.data?.rotateWebhookSecret.secret as string;
    assert.ok(fresh && fresh !== secret);
    const again = await uploadNpyPair(app.url as string, app.key, data.test, "TEST");
    const got = await receivedFor("DATASET_READY", (r) => r.json.data.dataset?.id === again);
    const header = String(got.headers["trapdoor-signature"]);
    assert.equal(header.split(",").filter((f) => f.startsWith("v1=")).length, 2);
    assert.ok(verifySignature(header, got.body, fresh) && verifySignature(header, got.body, secret));
  });

  it("refuses endpoints it must not reach, and other tenants see nothing", async () => {
    const cases: [string, RegExp][] = [
      ["http://169.254.169.254/latest/meta-data", /link-local|private|reserved/],
      ["http://10.1.2.3/hook", /private/],
      ["http://[::ffff:169.254.169.254]/x", /private|reserved/],
      ["http://user:pass@127.0.0.1/x", /credentials/],
      ["ftp://127.0.0.1/x", /http/],
      ["http://no-such-host.invalid/x", /does not resolve/],
    ];
    for (const [url, message] of cases) {
      const res = await create(url, ["JOB_SUCCEEDED"]);
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", url);
      assert.equal(res.errors?.[0]?.extensions?.field, "url");
      assert.match(res.errors?.[0]?.message as string, message);
    }
    const none = await create(`${receiver.url}/ok`, []);
    assert.equal(none.errors?.[0]?.extensions?.field, "events");
    const other = await createTenant(app.db, "other");
    const key = (await createApiKey(app.db, other.id, "k")).key;
    const seen = await gql<{ webhook: unknown; webhooks: unknown[] }>(
      app.url as string,
      key,
      `query($id: ID!) { webhook(id: $id) { id } webhooks { id } }`,
      {
        id: webhookId,
      },
    );
    assert.deepEqual(seen.data, { webhook: null, webhooks: [] });
    const deleted = await gql(app.url as string, app.key, `mutation($id: ID!) { deleteWebhook(id: $id) }`, {
      id: webhookId,
    });
    assert.equal(deleted.errors, undefined);
    const list = await gql<{ webhooks: { id: string }[] }>(app.url as string, app.key, "{ webhooks { id } }");
    assert.ok(!list.data?.webhooks.some((w) => w.id === webhookId));
  });

  it("the sweeper forgets finished deliveries after 30 days, never pending ones", async () => {
    const [old] = await app.db.query(
      "UPDATE webhook_deliveries SET created_at = now() - interval '31 days' WHERE id = (SELECT id FROM webhook_deliveries WHERE status = 'DELIVERED' LIMIT 1) RETURNING id",
    );
    const [pending] = await app.db.query(
      `INSERT INTO webhook_deliveries (webhook_id, tenant_id, event, payload, created_at, queued_at)
       SELECT id, tenant_id, 'JOB_FAILED', '{}', now() - interval '31 days', now() FROM webhooks LIMIT 1 RETURNING id`,
    );
    const report = await app.sweeper.sweep();
    assert.equal(report.forgottenDeliveries, 1);
    const left = await app.db.query("SELECT id FROM webhook_deliveries WHERE id = ANY($1)", [
      [old.id, pending.id],
    ]);
    assert.deepEqual(
      left.map((r: { id: string }) => r.id),
      [pending.id],
    );
  });

  it("connects to the address it checked, whatever the name resolves to later (no DNS rebinding)", async () => {
    const policy = new AddressPolicy(["127.0.0.0/8"]);
    const port = (receiver.server.address() as AddressInfo).port;
    let lookups = 0;
    // The first answer passes the check; any later one would point somewhere forbidden.
    const rebinding = async () =>
      lookups++ === 0 ? [{ address: "127.0.0.1", family: 4 }] : [{ address: "10.9.9.9", family: 4 }];
    const before = receiver.received.length;
    const result = await postJson(
      `http://rebind.example:${port}/ok`,
      "{}",
      {},
      { policy, resolve: rebinding, timeoutMs: 5000 },
    );
    assert.equal(result.statusCode, 200);
    assert.equal(lookups, 1, "resolved once");
    assert.equal(receiver.received.length, before + 1);
    assert.equal(receiver.received.at(-1)?.headers.host, `rebind.example:${port}`);
    const mixed = async () => [
      { address: "127.0.0.1", family: 4 },
      { address: "169.254.169.254", family: 4 },
    ];
    await assert.rejects(
      postJson(`http://mixed.example:${port}/ok`, "{}", {}, { policy, resolve: mixed, timeoutMs: 5000 }),
      WebhookRefused,
    );
  });
});
