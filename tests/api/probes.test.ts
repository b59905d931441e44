import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startTestApp } from "../helpers/app.ts";

describe("liveness, readiness and the schema version", () => {
  it("/readyz says which dependency is unreachable (503) while /healthz stays up", async () => {
    // An object store nobody listens on: the database is fine, the store is not.
    const app = await startTestApp(
      {
        S3_BUCKET: "nowhere",
        S3_ENDPOINT: "http://127.0.0.1:9",
        S3_ACCESS_KEY_ID: "x",
        S3_SECRET_ACCESS_KEY: "x",
      },
      { api: true, worker: false },
    );
    try {
      const health = await fetch(`${app.url}/healthz`);
      assert.equal(health.status, 200);
      const ready = await fetch(`${app.url}/readyz`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as { ok: boolean; checks: Record<string, string> };
      assert.equal(body.ok, false);
      assert.equal(body.checks.database, "ok");
      assert.match(body.checks.objectStore ?? "", /^unreachable: /);
    } finally {
      await app.cleanup();
    }
  });

  it("/readyz is 200 when the database and the store answer", async () => {
    const app = await startTestApp({}, { api: true, worker: false });
    try {
      const ready = await fetch(`${app.url}/readyz`);
      assert.deepEqual(await ready.json(), { ok: true, checks: { database: "ok", objectStore: "ok" } });
      assert.equal(ready.status, 200);
    } finally {
      await app.cleanup();
    }
  });

  it("with TRAPDOOR_AUTO_MIGRATE=false a process refuses a schema that is behind it", async () => {
    await assert.rejects(
      startTestApp({ TRAPDOOR_AUTO_MIGRATE: "false" }, { api: true, worker: false }),
      /schema is behind this version: run `trapdoor migrate`/,
    );
  });
});
