/**
 * Abuse case 4: one request with 1,600 aliased `job(id:)` fields made 1,600 SQL round trips and
 * slowed every other tenant; nothing limited a tenant's request rate. And the API keys a flood
 * would use: listable, with their last use, and expiring.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import { gql, startReplica, startTestApp, waitFor } from "../helpers/app.ts";
import { assertInvariants } from "../helpers/invariants.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

async function post(url: string, key: string, query: string) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ query }),
  });
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    body: (await res.json()) as { errors?: { message: string; extensions?: Record<string, unknown> }[] },
  };
}

/** The rate window of these tests: long, so a run lands inside one window. */
const WINDOW = 3600;

const aliased = (n: number, id: string) =>
  `{ ${Array.from({ length: n }, (_, i) => `j${i}: job(id: "${id}") { id status }`).join(" ")} }`;

describe("abuse: alias floods and request rates (case 4)", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp(
      { TRAPDOOR_RATE_LIMIT: "40", TRAPDOOR_RATE_LIMIT_WINDOW_SECONDS: String(WINDOW) },
      {
        api: true,
        worker: false,
      },
    );
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  it("1,600 aliased root fields are refused before any resolver runs; 50 are one query", async () => {
    const url = app.url as string;
    const id = "00000000-0000-4000-8000-000000000001";
    let batches = 0;
    let asked = 0;
    const getMany = app.jobs.getMany.bind(app.jobs);
    app.jobs.getMany = (tenantId, ids) => {
      batches++;
      asked += ids.length;
      return getMany(tenantId, ids);
    };
    const flood = await post(url, app.key, aliased(1600, id));
    assert.equal(flood.status, 400);
    assert.equal(flood.body.errors?.[0]?.extensions?.code, "GRAPHQL_VALIDATION_FAILED");
    assert.match(flood.body.errors?.[0]?.message ?? "", /1600 root fields; the limit is 50/);
    assert.equal(batches, 0);
    const fifty = await post(url, app.key, aliased(50, id));
    assert.equal(fifty.status, 200, JSON.stringify(fifty.body));
    assert.equal(batches, 1, "50 job(id:) fields are loaded in one batch");
    assert.equal(asked, 1, "the same id asked 50 times is asked once");
    app.jobs.getMany = getMany;
  });

  it("a tenant past its rate gets 429 RATE_LIMITED with Retry-After, counted across replicas; other tenants are untouched", async () => {
    const url = app.url as string;
    const other = await createApiKey(app.db, (await createTenant(app.db, "bystander")).id, "k");
    const replica = await startReplica(
      app,
      { api: true, worker: false },
      {
        TRAPDOOR_RATE_LIMIT: "40",
        TRAPDOOR_RATE_LIMIT_WINDOW_SECONDS: String(WINDOW),
      },
    );
    try {
      // Windows are aligned to the clock: start well inside one, so the test never straddles two.
      const into = (Date.now() / 1000) % WINDOW;
      if (into > WINDOW - 30) await new Promise((r) => setTimeout(r, (WINDOW - into + 1) * 1000));
      // The window is shared: requests on this replica count on the other one after a sync (≤ 1 s).
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await post(url, app.key, "{ viewer { id } }")).status);
      assert.ok(statuses.every((s) => s === 200));
      await new Promise((r) => setTimeout(r, 2500));
      let admitted = 0;
      let refused: Awaited<ReturnType<typeof post>> | undefined;
      for (let i = 0; i < 30 && !refused; i++) {
        const res = await post(replica.url as string, app.key, "{ viewer { id } }");
        if (res.status === 200) admitted++;
        else refused = res;
      }
      assert.ok(admitted <= 10, `the second replica admitted ${admitted} more than the 40 allowed`);
      assert.ok(refused, "the tenant was never limited");
      assert.equal(refused.status, 429);
      const code = refused.body.errors?.[0]?.extensions?.code;
      assert.equal(code, "RATE_LIMITED", JSON.stringify(refused.body));
      const retry = Number(refused.retryAfter);
      assert.ok(
        Number.isInteger(retry) && retry >= 1 && retry <= WINDOW,
        `Retry-After ${refused.retryAfter}`,
      );
      assert.equal(refused.body.errors?.[0]?.extensions?.retryAfterSeconds, retry);
      // Another tenant on the same replicas is not affected.
      assert.equal((await post(url, other.key, "{ viewer { id } }")).status, 200);
      assert.equal((await post(replica.url as string, other.key, "{ viewer { id } }")).status, 200);
    } finally {
      await replica.stop();
    }
  });
});

describe("one tenant's parallel burst, and cached keys", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({ TRAPDOOR_MAX_CONCURRENT_REQUESTS: "1" }, { api: true, worker: false });
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  it("past its in-flight cap a tenant gets 429 at once; slots come back when requests end", async () => {
    const url = app.url as string;
    const query =
      "{ jobs(first: 100) { edges { node { id } } } datasets(first: 100) { edges { node { id } } } }";
    const burst = await Promise.all(Array.from({ length: 50 }, () => post(url, app.key, query)));
    const statuses = burst.map((r) => r.status);
    assert.ok(statuses.includes(200) && statuses.includes(429), `statuses ${statuses.join(",")}`);
    const refused = burst.find((r) => r.status === 429);
    assert.equal(refused?.body.errors?.[0]?.extensions?.code, "RATE_LIMITED");
    assert.equal(refused?.retryAfter, "1");
    // Sequential requests never overlap: each gets the one slot back.
    for (let i = 0; i < 5; i++) assert.equal((await post(url, app.key, query)).status, 200);
  });

  it("a key revoked on one replica is refused by another at once, though that one had it cached", async () => {
    const url = app.url as string;
    const made = await gql<{ createApiKey: { id: string; key: string } }>(
      url,
      app.key,
      `mutation { createApiKey(name: "soon revoked") { id key } }`,
    );
    const key = made.data?.createApiKey;
    assert.ok(key);
    // Replica B caches keys for 10 minutes: only the revocation message can make it forget.
    const b = await startReplica(app, { api: true, worker: false }, { TRAPDOOR_KEY_CACHE_SECONDS: "600" });
    try {
      assert.equal((await post(b.url as string, key.key, "{ viewer { id } }")).status, 200);
      const revoked = await gql(url, app.key, `mutation($id: ID!) { revokeApiKey(id: $id) }`, { id: key.id });
      assert.ifError(revoked.errors?.[0]);
      await waitFor(
        "replica B to refuse the revoked key",
        async () => (await post(b.url as string, key.key, "{ viewer { id } }")).status === 401,
        3000,
      );
    } finally {
      await b.stop();
    }
  });
});

describe("API keys: listing, last use, expiry", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  it("a key with expiresAt works until then and is 401 after; keys are listed with lastUsedAt", async () => {
    const url = app.url as string;
    const expiresAt = new Date(Date.now() + 2500).toISOString();
    const made = await gql<{ createApiKey: { id: string; key: string; expiresAt: string } }>(
      url,
      app.key,
      `mutation($e: DateTime) { createApiKey(name: "short-lived", expiresAt: $e) { id key expiresAt } }`,
      { e: expiresAt },
    );
    const key = made.data?.createApiKey;
    assert.ok(key, JSON.stringify(made.errors));
    assert.equal(key.expiresAt, expiresAt);
    assert.equal((await post(url, key.key, "{ viewer { id } }")).status, 200);
    await app.tenants.flushKeyUse();
    const listed = await gql<{
      viewer: { apiKeys: { id: string; name: string; prefix: string; lastUsedAt: string | null }[] };
    }>(url, app.key, `{ viewer { apiKeys { id name prefix lastUsedAt expiresAt revokedAt } } }`);
    const mine = listed.data?.viewer.apiKeys.find((k) => k.id === key.id);
    assert.ok(mine?.lastUsedAt, JSON.stringify(listed));
    assert.equal(mine?.prefix, key.key.slice(0, 7));
    assert.ok(!JSON.stringify(listed).includes(key.key), "the key itself is never shown again");
    await waitFor(
      "the key to expire",
      async () => (await post(url, key.key, "{ viewer { id } }")).status === 401,
    );
    const past = await gql(
      url,
      app.key,
      `mutation { createApiKey(name: "x", expiresAt: "2000-01-01T00:00:00Z") { id } }`,
    );
    assert.equal(past.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    // Not a date: a typed validation error (a literal) or BAD_USER_INPUT (a variable).
    const literal = await gql(url, app.key, `mutation { createApiKey(name: "x", expiresAt: "soon") { id } }`);
    assert.equal(literal.errors?.[0]?.extensions?.code, "GRAPHQL_VALIDATION_FAILED");
    const variable = await gql(
      url,
      app.key,
      `mutation($e: DateTime) { createApiKey(name: "x", expiresAt: $e) { id } }`,
      {
        e: "soon",
      },
    );
    assert.equal(variable.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
  });
});
