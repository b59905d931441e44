/**
 * The audit log (who did what to which object, when; per tenant) and the security headers every
 * response carries.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import { gql, startTestApp } from "../helpers/app.ts";
import { assertInvariants } from "../helpers/invariants.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

interface AuditPage {
  viewer: {
    auditLog: {
      edges: {
        cursor: string;
        node: { actor: string; action: string; targetType: string; targetId: string };
      }[];
      pageInfo: { hasNextPage: boolean; endCursor: string | null };
    };
  };
}
const AUDIT = `query($first: Int, $after: String) { viewer { auditLog(first: $first, after: $after) {
  edges { cursor node { id at actor action targetType targetId } } pageInfo { hasNextPage endCursor } } } }`;

describe("the audit log", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  it("records each mutation that succeeded with the key that made it, newest first, per tenant", async () => {
    const url = app.url as string;
    const made = await gql<{ createApiKey: { id: string; key: string } }>(
      url,
      app.key,
      `mutation { createApiKey(name: "ci") { id key } }`,
    );
    const ci = made.data?.createApiKey;
    assert.ok(ci);
    const upload = await gql<{ createDatasetUpload: { dataset: { id: string } } }>(
      url,
      ci.key,
      `mutation { createDatasetUpload(input: { name: "d", role: TEST, format: NPZ, sizeBytes: 10, sha256: "${"e".repeat(64)}" }) { dataset { id } } }`,
    );
    const datasetId = upload.data?.createDatasetUpload.dataset.id as string;
    await gql(url, ci.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, { id: datasetId });
    // A refused mutation changes nothing and is not recorded.
    const refused = await gql(url, ci.key, `mutation { deleteDataset(id: "${datasetId}") }`);
    assert.equal(refused.errors?.[0]?.extensions?.code, "NOT_FOUND");
    await gql(url, app.key, `mutation($id: ID!) { revokeApiKey(id: $id) }`, { id: ci.id });

    const firstKey = (await app.db.query("SELECT id FROM api_keys WHERE name = 'first key'"))[0].id;
    const res = await gql<AuditPage>(url, app.key, AUDIT, { first: 10 });
    const events = res.data?.viewer.auditLog.edges.map((e) => e.node);
    assert.deepEqual(
      events?.map((e) => [e.action, e.targetType, e.targetId, e.actor]),
      [
        ["revokeApiKey", "apiKey", ci.id, firstKey],
        ["deleteDataset", "dataset", datasetId, ci.id],
        ["createDatasetUpload", "dataset", datasetId, ci.id],
        ["createApiKey", "apiKey", ci.id, firstKey],
      ],
    );
    // Pages: two, then the rest.
    const page1 = await gql<AuditPage>(url, app.key, AUDIT, { first: 2 });
    assert.equal(page1.data?.viewer.auditLog.pageInfo.hasNextPage, true);
    const page2 = await gql<AuditPage>(url, app.key, AUDIT, {
      first: 2,
      after: page1.data?.viewer.auditLog.pageInfo.endCursor,
    });
    assert.deepEqual(
      page2.data?.viewer.auditLog.edges.map((e) => e.node.action),
      ["createDatasetUpload", "createApiKey"],
    );
    const bad = await gql(url, app.key, AUDIT, { first: 2, after: "x'; --" });
    assert.equal(bad.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    // Another tenant sees none of it.
    const other = await createApiKey(app.db, (await createTenant(app.db, "other")).id, "k");
    const theirs = await gql<AuditPage>(url, other.key, AUDIT, { first: 10 });
    assert.deepEqual(theirs.data?.viewer.auditLog.edges, []);
  });
});

describe("security headers", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(() => app.cleanup());

  it("every response forbids rendering, framing and sniffing, and names no framework", async () => {
    const url = app.url as string;
    const responses = [
      await fetch(`${url}/healthz`),
      await fetch(`${url}/no-such-route`),
      await fetch(`${url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${app.key}` },
        body: JSON.stringify({ query: "{ viewer { id } }" }),
      }),
      await fetch(`${url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{",
      }),
    ];
    for (const res of responses) {
      assert.equal(res.headers.get("content-security-policy"), "default-src 'none'; frame-ancestors 'none'");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("referrer-policy"), "no-referrer");
      assert.equal(res.headers.get("x-powered-by"), null);
      await res.arrayBuffer();
    }
  });
});
