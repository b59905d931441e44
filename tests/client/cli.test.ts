import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ExitCode } from "../../src/client/exit-codes.ts";
import { freePort } from "../../src/db/embedded.ts";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import { gql, makeDatasets, python, sha256, startTestApp } from "../helpers/app.ts";
import { type Run, trapdoor } from "../helpers/cli.ts";
import { type Forwarder, startForwarder } from "../helpers/proxy.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;
const _repo = fileURLToPath(new URL("../..", import.meta.url));

const json = <T>(run: Run): T => {
  assert.ok(run.stdout.trim(), `no stdout; stderr: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
};

interface CliJob {
  id: string;
  status: string;
  progress: { stage: string | null; fraction: number } | null;
  metrics: { asr: number | null; ca: number | null } | null;
}

describe("the trapdoor client CLI against a running service", () => {
  let app: TestApp;
  let forwarder: Forwarder;
  let config: string;
  let env: Record<string, string>;
  let data: Record<"train" | "holdout" | "test" | "asr", string>;
  const ids: Record<string, string> = {};
  let jobId: string;

  const run = (args: string[], opts: { env?: Record<string, string>; cwd?: string; stdin?: string } = {}) =>
    trapdoor(args, { ...opts, env: { ...env, ...opts.env } });

  const launchArgs = (key: string, extra: string[] = []) => [
    "jobs",
    "launch",
    "--method",
    "no-defense",
    "--architecture",
    "small-cnn",
    "--train",
    ids.train as string,
    "--holdout",
    ids.holdout as string,
    "--test",
    ids.test as string,
    "--hp",
    "epochs=2",
    "--hp",
    "batchSize=64",
    "--idempotency-key",
    key,
    "--json",
    ...extra,
  ];

  before(async () => {
    // Signed URLs point at the forwarder, so it can play a flaky network for uploads.
    const port = await freePort();
    const forwarderPort = await freePort();
    app = await startTestApp({
      PORT: String(port),
      TRAPDOOR_PUBLIC_URL: `http://127.0.0.1:${forwarderPort}`,
      // GPU jobs wait QUEUED (this machine has no GPU worker) for the watch and cancel tests.
      TRAPDOOR_AUTOSCALED_QUEUES: "gpu",
    });
    forwarder = await startForwarder(app.url as string, forwarderPort);
    config = mkdtempSync(join(tmpdir(), "trapdoor-cli-config-"));
    env = { XDG_CONFIG_HOME: config };
    data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-cli-data-")), {
      nTrain: 300,
      nHoldout: 80,
      nTest: 80,
    });
  });

  after(async () => {
    await forwarder?.stop();
    await app?.cleanup();
  });

  it("login refuses a bad key with the auth exit code and writes nothing", { timeout: 60_000 }, async () => {
    const bad = await run(["login", "--endpoint", app.url as string, "--key", "td_wrong"]);
    assert.equal(bad.code, ExitCode.AUTH, bad.stderr);
    assert.match(bad.stderr, /unknown or revoked/);
    assert.equal(existsSync(join(config, "trapdoor", "config.json")), false);
  });

  it("login checks the key, then saves endpoint and key readable by the owner only", {
    timeout: 60_000,
  }, async () => {
    const ok = await run(["login", "--endpoint", app.url as string, "--key", "-", "--json"], {
      stdin: app.key,
    });
    assert.equal(ok.code, ExitCode.OK, ok.stderr);
    const out = json<{ endpoint: string; tenant: { name: string }; config: string }>(ok);
    assert.equal(out.endpoint, `${app.url}/graphql`);
    assert.equal(out.tenant.name, "default");
    const file = join(config, "trapdoor", "config.json");
    assert.equal(out.config, file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(config, "trapdoor")).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), {
      endpoint: `${app.url}/graphql`,
      key: app.key,
    });
  });

  it("datasets upload sends NPY pairs and an NPZ, waits for READY, and lists them", {
    timeout: 120_000,
  }, async () => {
    for (const [name, role] of [
      ["train", "TRAIN"],
      ["holdout", "HOLDOUT"],
      ["test", "TEST"],
    ] as const) {
      const dir = data[name];
      // Labels first: the parts are told apart by their file names, not their order.
      const up = await run([
        "datasets",
        "upload",
        join(dir, "labels.npy"),
        join(dir, "images.npy"),
        "--role",
        role.toLowerCase(),
        "--format",
        "NPY_PAIR",
        "--json",
      ]);
      assert.equal(up.code, ExitCode.OK, up.stderr);
      const ds = json<{ id: string; status: string; name: string; role: string; count: number }>(up);
      assert.deepEqual([ds.status, ds.role, ds.name], ["READY", role, name]);
      ids[name] = ds.id;
    }
    // A single-file format goes up as one part, named after the file.
    const npz = join(mkdtempSync(join(tmpdir(), "trapdoor-cli-npz-")), "asr-set.npz");
    const made = spawnSync(python, [
      "-c",
      "import sys, numpy as np; d=sys.argv[1]; np.savez(sys.argv[2], images=np.load(d+'/images.npy'), labels=np.load(d+'/labels.npy'))",
      data.asr,
      npz,
    ]);
    assert.equal(made.status, 0, String(made.stderr));
    const up = await run(["datasets", "upload", npz, "--role", "ASR_TEST", "--format", "npz", "--json"]);
    assert.equal(up.code, ExitCode.OK, up.stderr);
    const asr = json<{ id: string; status: string; name: string; format: string }>(up);
    assert.deepEqual([asr.status, asr.name, asr.format], ["READY", "asr-set", "NPZ"]);
    ids.asr = asr.id;

    const list = await run(["datasets", "list", "--json"]);
    assert.equal(list.code, ExitCode.OK, list.stderr);
    const listed = json<{ id: string; status: string }[]>(list);
    for (const id of Object.values(ids)) assert.equal(listed.find((d) => d.id === id)?.status, "READY", id);
    const human = await run(["datasets", "list", "--role", "train"]);
    assert.match(human.stdout, /^ID\s+NAME\s+ROLE/);
    assert.ok(human.stdout.includes(ids.train as string));
    assert.ok(!human.stdout.includes(ids.test as string));
  });

  it("an interrupted upload fails cleanly, then resumes with the parts already stored", {
    timeout: 120_000,
  }, async () => {
    const args = [
      "datasets",
      "upload",
      `images=${join(data.test, "images.npy")}`,
      `labels=${join(data.test, "labels.npy")}`,
      "--role",
      "TEST",
      "--format",
      "NPY_PAIR",
      "--name",
      "resumed",
      "--json",
    ];
    forwarder.failPuts = /\/labels(\?|$)/;
    const broken = await run(args);
    forwarder.failPuts = null;
    assert.equal(broken.code, ExitCode.NETWORK, broken.stderr);
    assert.ok(forwarder.failed >= 2, "the labels PUT was retried");
    const error = JSON.parse(broken.stderr.trim().split("\n").at(-1) as string).error;
    assert.match(error.message, /labels.*HTTP 503[\s\S]*run the same command again to resume/);
    assert.equal(readdirSync(join(config, "trapdoor", "uploads")).length, 1);

    const resumed = await run(args.filter((a) => a !== "--json"));
    assert.equal(resumed.code, ExitCode.OK, resumed.stderr);
    assert.match(resumed.stderr, /resuming the upload of dataset (\S+) \(1 of 2 parts already stored\)/);
    const datasetId = /resuming the upload of dataset (\S+)/.exec(resumed.stderr)?.[1];
    assert.match(resumed.stdout, new RegExp(`dataset ${datasetId} "resumed" TEST READY`));
    assert.equal(readdirSync(join(config, "trapdoor", "uploads")).length, 0);
  });

  it("jobs launch, then jobs watch --json follows it live to SUCCEEDED with metrics", {
    timeout: 180_000,
  }, async () => {
    const launched = await run(launchArgs("cli-1", ["--asr-test", ids.asr as string, "--target", "0"]));
    assert.equal(launched.code, ExitCode.OK, launched.stderr);
    const job = json<CliJob & { method: string }>(launched);
    assert.equal(job.method, "NO_DEFENSE");
    assert.ok(["QUEUED", "VALIDATING"].includes(job.status), job.status);
    jobId = job.id;

    const watched = await run(["jobs", "watch", jobId, "--json"]);
    assert.equal(watched.code, ExitCode.OK, watched.stderr);
    assert.doesNotMatch(watched.stderr, /polling/);
    const lines = watched.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as CliJob);
    assert.ok(lines.length >= 2, watched.stdout);
    assert.ok(lines.every((l) => l.id === jobId));
    const last = lines.at(-1) as CliJob;
    assert.equal(last.status, "SUCCEEDED");
    assert.equal(typeof last.metrics?.asr, "number");
    assert.equal(typeof last.metrics?.ca, "number");

    // For people: the final table of metrics on stdout.
    const human = await run(["jobs", "watch", jobId]);
    assert.equal(human.code, ExitCode.OK, human.stderr);
    assert.match(human.stdout, new RegExp(`job ${jobId} SUCCEEDED`));
    assert.match(human.stdout, /^ASR\s+\d+\.\d\d %$/m);
    assert.match(human.stdout, /^CA\s+\d+\.\d\d %$/m);
  });

  it("jobs watch falls back to polling when WebSockets do not get through", {
    timeout: 180_000,
  }, async () => {
    const launched = await run(launchArgs("cli-2"));
    const id = json<CliJob>(launched).id;
    const watched = await run(["jobs", "watch", id, "--json", "--poll-seconds", "1"], {
      env: { TRAPDOOR_ENDPOINT: `${forwarder.url}/graphql` },
    });
    assert.equal(watched.code, ExitCode.OK, watched.stderr);
    const lines = watched.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as CliJob);
    assert.equal(lines.at(-1)?.status, "SUCCEEDED");
    // In --json mode the fallback note is not printed; the human run below shows it.
    const human = await run(["jobs", "watch", id], {
      env: { TRAPDOOR_ENDPOINT: `${forwarder.url}/graphql` },
    });
    assert.equal(human.code, ExitCode.OK, human.stderr);
    assert.match(human.stderr, /live updates unavailable .*; polling instead/);
  });

  it("jobs download writes the artifact and verifies its sha256", { timeout: 60_000 }, async () => {
    const res = await gql<{ job: { artifacts: { format: string; sha256: string; sizeBytes: number }[] } }>(
      app.url as string,
      app.key,
      `query($id: ID!) { job(id: $id) { artifacts { format sha256 sizeBytes } } }`,
      { id: jobId },
    );
    const dir = mkdtempSync(join(tmpdir(), "trapdoor-cli-download-"));
    const file = join(dir, "defended.onnx");
    const onnx = await run(["jobs", "download", jobId, "--format", "onnx", "-o", file, "--json"]);
    assert.equal(onnx.code, ExitCode.OK, onnx.stderr);
    const expected = res.data?.job.artifacts.find((a) => a.format === "onnx");
    assert.ok(expected);
    const bytes = readFileSync(file);
    assert.equal(sha256(bytes), expected.sha256);
    assert.deepEqual(json(onnx), {
      file,
      format: "onnx",
      kind: "onnx",
      sizeBytes: expected.sizeBytes,
      sha256: expected.sha256,
      verified: true,
    });
    // Without -o: <job id>.safetensors in the working directory.
    const st = await run(["jobs", "download", jobId, "--format", "safetensors"], { cwd: dir });
    assert.equal(st.code, ExitCode.OK, st.stderr);
    const safetensors = res.data?.job.artifacts.find((a) => a.format === "safetensors");
    assert.equal(sha256(readFileSync(join(dir, `${jobId}.safetensors`))), safetensors?.sha256);
    // The model-card bundle: a tar holding the model files and README.md.
    const tar = await run(["jobs", "download", jobId, "--format", "tar"], { cwd: dir });
    assert.equal(tar.code, ExitCode.OK, tar.stderr);
    const bundle = res.data?.job.artifacts.find((a) => a.format === "tar");
    const bundleBytes = readFileSync(join(dir, `${jobId}.tar`));
    assert.equal(sha256(bundleBytes), bundle?.sha256);
    assert.ok(
      bundleBytes.includes(Buffer.from("README.md")) && bundleBytes.includes(Buffer.from("model.onnx")),
    );
    assert.deepEqual(
      readdirSync(dir).sort(),
      [`${jobId}.safetensors`, `${jobId}.tar`, "defended.onnx"].sort(),
    );
  });

  it("a cancelled job ends jobs watch with the job-failed exit code", { timeout: 60_000 }, async () => {
    // The gpu queue has no worker here: the job waits in QUEUED until it is cancelled.
    const id = json<CliJob>(await run(launchArgs("cli-3", ["--gpu"]))).id;
    const watching = run(["jobs", "watch", id]);
    await new Promise((r) => setTimeout(r, 1500));
    const cancel = await gql(app.url as string, app.key, `mutation($id: ID!) { cancelJob(id: $id) { id } }`, {
      id,
    });
    assert.equal(cancel.errors, undefined);
    const watched = await watching;
    assert.equal(watched.code, ExitCode.JOB_FAILED, watched.stderr);
    assert.match(watched.stderr, new RegExp(`job ${id} ended CANCELLED`));
    assert.match(watched.stderr, new RegExp(`job ${id} QUEUED`));
  });

  it("error exit codes: auth, not found, other tenant, usage, network, bad data", {
    timeout: 120_000,
  }, async () => {
    const badKey = await run(["datasets", "list", "--json"], { env: { TRAPDOOR_KEY: "td_revoked" } });
    assert.equal(badKey.code, ExitCode.AUTH);
    assert.equal(JSON.parse(badKey.stderr).error.code, "UNAUTHENTICATED");

    const notLoggedIn = await run(["jobs", "list"], {
      env: { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "x-")) },
    });
    assert.equal(notLoggedIn.code, ExitCode.AUTH);
    assert.match(notLoggedIn.stderr, /not logged in/);

    const unknown = "00000000-0000-4000-8000-000000000000";
    const watch = await run(["jobs", "watch", unknown, "--json"]);
    assert.equal(watch.code, ExitCode.API);
    assert.equal(JSON.parse(watch.stderr).error.code, "NOT_FOUND");
    const download = await run(["jobs", "download", unknown, "--format", "onnx"]);
    assert.equal(download.code, ExitCode.API);
    assert.match(download.stderr, /does not exist/);

    const other = await createTenant(app.db, "other");
    const otherKey = (await createApiKey(app.db, other.id, "k")).key;
    const stolen = await run(["jobs", "watch", jobId, "--json"], { env: { TRAPDOOR_KEY: otherKey } });
    assert.equal(stolen.code, ExitCode.API);
    assert.equal(JSON.parse(stolen.stderr).error.code, "NOT_FOUND");

    const usage = await run(["jobs", "launch", "--train", "x"]);
    assert.equal(usage.code, ExitCode.USAGE);
    assert.match(usage.stderr, /--method is required/);
    const flag = await run(["datasets", "list", "--bogus"]);
    assert.equal(flag.code, ExitCode.USAGE);

    const badInput = await run([...launchArgs("cli-bad"), "--hp", "lambda1=3"]);
    assert.equal(badInput.code, ExitCode.API);
    const badError = JSON.parse(badInput.stderr).error;
    assert.equal(badError.code, "BAD_USER_INPUT");
    assert.equal(badError.field, "hyperparameters.lambda1");

    const closed = await freePort();
    const network = await run(["datasets", "list"], {
      env: { TRAPDOOR_ENDPOINT: `http://127.0.0.1:${closed}` },
    });
    assert.equal(network.code, ExitCode.NETWORK);
    assert.match(network.stderr, /cannot reach http:\/\/127\.0\.0\.1:\d+\/graphql: ECONNREFUSED/);

    const junk = join(mkdtempSync(join(tmpdir(), "trapdoor-cli-junk-")), "junk.npz");
    writeFileSync(junk, "this is not an npz archive");
    const rejected = await run(["datasets", "upload", junk, "--role", "TRAIN", "--format", "NPZ"]);
    assert.equal(rejected.code, ExitCode.API);
    assert.match(rejected.stdout, /FAILED/);
    assert.match(rejected.stderr, /failed validation: /);
  });
});
