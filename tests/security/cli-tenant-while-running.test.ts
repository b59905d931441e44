import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gql, startTestApp } from "../helpers/app.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

describe("trapdoor tenant while trapdoor start runs on the same data directory", () => {
  let app: Awaited<ReturnType<typeof startTestApp>>;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(async () => {
    await app?.cleanup();
  });

  it("connects to the running cluster, prints a working key and leaves the cluster running", async () => {
    const { DATABASE_URL: _, ...env } = process.env;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["bin/trapdoor.js", "tenant", "acme", "--data-dir", app.dir],
      { cwd: repo, env, timeout: 60_000 },
    );
    const tenantId = stdout.match(/^tenant (\S+)$/m)?.[1];
    const key = stdout.match(/^API key: (td_\S+)$/m)?.[1];
    assert.ok(tenantId && key, stdout);
    const viewer = await gql<{ viewer: { id: string } }>(app.url as string, key, "{ viewer { id } }");
    assert.equal(viewer.data?.viewer.id, tenantId, JSON.stringify(viewer));
    // The app's own database is still there: the CLI did not stop what it did not start.
    const own = await gql<{ viewer: { id: string } }>(app.url as string, app.key, "{ viewer { id } }");
    assert.ok(own.data?.viewer.id, JSON.stringify(own));
    assert.notEqual(own.data?.viewer.id, tenantId);
    assert.equal((await app.db.query("SELECT 1 AS ok"))[0].ok, 1);
  });

  it("trapdoor quota sets a tenant's own quota, which the API then enforces; bad input is refused", async () => {
    const { DATABASE_URL: _, ...env } = process.env;
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, ["bin/trapdoor.js", ...args, "--data-dir", app.dir], {
        cwd: repo,
        env,
        timeout: 60_000,
      });
    const viewer = await gql<{ viewer: { id: string } }>(app.url as string, app.key, "{ viewer { id } }");
    const tenantId = viewer.data?.viewer.id as string;
    const { stdout } = await run("quota", tenantId, "--bytes", "1000", "--datasets", "3");
    assert.match(stdout, /quota: \{"bytes":1000,"datasets":3,"liveJobs":20\}/);
    const quota = await gql<{ viewer: { quota: { bytes: number; datasets: number } } }>(
      app.url as string,
      app.key,
      "{ viewer { quota { bytes datasets } } }",
    );
    assert.deepEqual(quota.data?.viewer.quota, { bytes: 1000, datasets: 3 });
    const upload = await gql(
      app.url as string,
      app.key,
      `mutation { createDatasetUpload(input: { name: "big", role: TEST, format: NPZ, sizeBytes: 2000, sha256: "${"a".repeat(64)}" }) { dataset { id } } }`,
    );
    assert.equal(upload.errors?.[0]?.extensions?.code, "QUOTA_EXCEEDED");
    for (const [args, message] of [
      [["quota", tenantId, "--bytes=1.5"], /--bytes must be a non-negative integer/],
      [["quota", "not-a-tenant"], /tenant not-a-tenant does not exist/],
      [["tenant", "n".repeat(101)], /NAME must be 1 to 100 characters/],
    ] as const) {
      await assert.rejects(run(...args), (error: { stderr: string; code: number }) => {
        assert.match(error.stderr, message);
        assert.equal(error.code, 1);
        return true;
      });
    }
  });
});
