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
});
