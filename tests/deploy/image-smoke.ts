/**
 * Drives scripts/image-smoke.sh: the api and worker images' file trees (built outside Docker) run
 * under Node 24 against one PostgreSQL and an S3-compatible store, sharing no disk. `serve` must
 * answer GraphQL and a `worker` must ingest uploads and complete a short job.
 *
 *   node --import tsx tests/deploy/image-smoke.ts NODE24 API_TREE WORKER_TREE
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { gql, launchJob, makeDatasets, python, uploadJobDatasets, waitFor } from "../helpers/app.ts";
import { startTrapdoor } from "../helpers/process.ts";
import { startS3rver } from "../storage/helpers.ts";

const [node24, apiTree, workerTree] = process.argv.slice(2);
if (!node24 || !apiTree || !workerTree) throw new Error("usage: image-smoke.ts NODE24 API_TREE WORKER_TREE");

const version = spawnSync(node24, ["--version"], { encoding: "utf8" }).stdout.trim();
assert.match(version, /^v24\./, `${node24} is ${version}, not Node 24`);

const scratch = mkdtempSync(join(tmpdir(), "trapdoor-smoke-"));
const database = await startEmbeddedPostgres(mkdtempSync(join(tmpdir(), "trapdoor-smoke-pg-")));
const s3 = await startS3rver("trapdoor-smoke");
const port = await freePort();
const env: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  DATABASE_URL: database.url,
  S3_BUCKET: s3.bucket,
  S3_ENDPOINT: s3.endpoint,
  S3_REGION: s3.region,
  S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
  S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
  TRAPDOOR_SIGNING_SECRET: "smoke",
  TRAPDOOR_POLL_SECONDS: "1",
  NODE_ENV: "production",
};
const children: ChildProcess[] = [];

function run(tree: string, args: string[], extra: NodeJS.ProcessEnv = {}) {
  const out = spawnSync(node24 as string, ["bin/trapdoor.js", ...args], {
    cwd: tree,
    env: { ...env, ...extra },
    encoding: "utf8",
  });
  assert.equal(out.status, 0, `${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

async function start(
  tree: string,
  args: string[],
  extra: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<ChildProcess> {
  const child = await startTrapdoor(tree, args, { ...env, ...extra }, ready, node24);
  children.push(child);
  return child;
}

const started = Date.now();
try {
  run(apiTree, ["migrate"], { TRAPDOOR_DATA_DIR: join(scratch, "api") });
  const key = /td_\S+/.exec(
    run(apiTree, ["tenant", "smoke"], { TRAPDOOR_DATA_DIR: join(scratch, "api") }),
  )?.[0] as string;
  const url = `http://127.0.0.1:${port}`;
  await start(
    apiTree,
    ["serve"],
    { PORT: String(port), TRAPDOOR_PUBLIC_URL: url, TRAPDOOR_DATA_DIR: join(scratch, "api") },
    /trapdoor API on/,
  );
  const methods = await gql<{ methods: { name: string }[] }>(url, key, "{ methods { name } }");
  assert.ok((methods.data?.methods.length ?? 0) >= 8, JSON.stringify(methods));
  await start(
    workerTree,
    ["worker"],
    { TRAPDOOR_PYTHON: python, TRAPDOOR_DATA_DIR: join(scratch, "worker"), TRAPDOOR_PUBLIC_URL: url },
    /serving queues/,
  );
  const data = makeDatasets(join(scratch, "data"), { nTrain: 300, nHoldout: 60, nTest: 60 });
  const ids = await uploadJobDatasets(url, key, data);
  const id = await launchJob(url, key, {
    method: "NO_DEFENSE",
    architecture: "small-cnn",
    trainDatasetId: ids.train,
    holdoutDatasetId: ids.holdout,
    testDatasetId: ids.test,
    hyperparameters: { epochs: 1, batchSize: 64 },
    idempotencyKey: "smoke",
  });
  const job = await waitFor("the smoke job", async () => {
    const res = await gql<{ job: { status: string; metrics: { ca: number } | null } }>(
      url,
      key,
      `query($id: ID!) { job(id: $id) { status metrics { ca } } }`,
      { id },
    );
    return ["SUCCEEDED", "FAILED", "CANCELLED"].includes(res.data?.job.status as string)
      ? res.data?.job
      : null;
  });
  assert.equal(job.status, "SUCCEEDED");
  console.log(
    `image smoke: ${version}; serve answered GraphQL; worker ingested 3 uploads and trained (CA ${job.metrics?.ca}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
} finally {
  for (const child of children) child.kill("SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await database.stop();
  await s3.stop();
  rmSync(scratch, { recursive: true, force: true });
}
