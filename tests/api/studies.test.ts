/**
 * Comparison studies: launchStudy runs methods x seeds as queued jobs (real worker and trainer),
 * study { status table report } sums them up, cancelStudy stops them; the checks a launch gets
 * (caps, idempotency, per-method errors) hold for the whole study at once.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  gql,
  makeDatasets,
  startTestApp,
  uploadJobDatasets,
  uploadNpyPair,
  waitFor,
} from "../helpers/app.ts";
import { trapdoor } from "../helpers/cli.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

interface Row {
  method: string;
  seed: number;
  status: string;
  asr: number | null;
  ca: number | null;
  runtimeSeconds: number | null;
  healthVerdict: string | null;
  job: { id: string; labels: Record<string, string> };
}
interface Study {
  id: string;
  status: string;
  jobs: { id: string; status: string }[];
  table: Row[];
  report: { format: string; sha256: string; downloadUrl: string } | null;
}

const STUDY = `id status jobs { id status } table { method seed status asr ca mse runtimeSeconds healthVerdict job { id labels } }
  report { format sizeBytes sha256 downloadUrl }`;
const LAUNCH = `mutation($input: LaunchStudyInput!) { launchStudy(input: $input) { ${STUDY} } }`;

describe("comparison studies", () => {
  let app: TestApp;
  let inputs: Record<string, unknown>;

  const launch = (extra: Record<string, unknown>) =>
    gql<{ launchStudy: Study }>(app.url as string, app.key, LAUNCH, { input: { ...inputs, ...extra } });
  const read = async (id: string) => {
    const res = await gql<{ study: Study }>(
      app.url as string,
      app.key,
      `query($id: ID!) { study(id: $id) { ${STUDY} } }`,
      { id },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data?.study as Study;
  };
  const ended = (id: string) =>
    waitFor(
      `study ${id}`,
      async () => {
        const study = await read(id);
        return study.status === "RUNNING" ? null : study;
      },
      240_000,
    );

  before(async () => {
    app = await startTestApp({
      TRAPDOOR_MAX_STUDY_JOBS: "4",
      TRAPDOOR_MAX_LIVE_JOBS: "6",
      TRAPDOOR_AUTOSCALED_QUEUES: "gpu",
    });
    const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-study-")), {
      nTrain: 300,
      nHoldout: 60,
      nTest: 60,
    });
    const ids = await uploadJobDatasets(app.url as string, app.key, data);
    const asr = await uploadNpyPair(app.url as string, app.key, data.asr, "ASR_TEST");
    inputs = {
      methods: [
        { method: "NO_DEFENSE", hyperparameters: { epochs: 1, evalEvery: 0 } },
        {
          method: "TRAP_AND_REPLACE",
          hyperparameters: { stage1Epochs: 1, stage2Epochs: 1, isolateProbeEpochs: 1, evalEvery: 0 },
        },
      ],
      seeds: [0, 1],
      architecture: "small-cnn",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
      asrTestDatasetId: asr,
      target: 0,
      labels: { sweep: "s1" },
      idempotencyKey: "study-1",
    };
  });

  after(async () => {
    await app?.cleanup();
  });

  let studyId: string;

  it("runs every method x seed as a job and tabulates ASR, CA and the health verdict", async () => {
    const res = await launch({});
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const launched = res.data?.launchStudy as Study;
    studyId = launched.id;
    assert.equal(launched.status, "RUNNING");
    assert.equal(launched.jobs.length, 4);
    assert.equal(launched.report, null); // not before every job has ended
    // Beyond the live-job cap (6) no child is created at all.
    const over = await launch({ idempotencyKey: "study-2", seeds: [5, 6] });
    assert.equal(over.errors?.[0]?.extensions?.code, "QUOTA_EXCEEDED", JSON.stringify(over.errors));
    const study = await ended(studyId);
    assert.equal(study.status, "SUCCEEDED", JSON.stringify(study.table));
    assert.deepEqual(
      study.table.map((r) => [r.method, r.seed, r.status]),
      [
        ["NO_DEFENSE", 0, "SUCCEEDED"],
        ["NO_DEFENSE", 1, "SUCCEEDED"],
        ["TRAP_AND_REPLACE", 0, "SUCCEEDED"],
        ["TRAP_AND_REPLACE", 1, "SUCCEEDED"],
      ],
    );
    for (const row of study.table) {
      assert.ok(
        row.asr !== null && row.asr >= 0 && row.asr <= 1 && row.ca !== null && row.ca >= 0 && row.ca <= 1,
      );
      assert.ok(row.runtimeSeconds !== null && row.runtimeSeconds > 0);
      assert.equal(row.job.labels.sweep, "s1");
      assert.equal(row.healthVerdict !== null, row.method === "TRAP_AND_REPLACE");
    }
    const found = await gql<{ jobs: { edges: unknown[] } }>(
      app.url as string,
      app.key,
      `{ jobs(first: 50, filter: {labels: {sweep: "s1"}}) { edges { cursor } } }`,
    );
    assert.equal(found.data?.jobs.edges.length, 4);
  });

  it("the report bundle holds the table, the charts, the curves and the verdicts", async () => {
    const study = await read(studyId);
    assert.ok(study.report);
    assert.equal(study.report.format, "tar");
    const tar = Buffer.from(await (await fetch(study.report.downloadUrl)).arrayBuffer());
    const dir = mkdtempSync(join(tmpdir(), "trapdoor-report-"));
    writeFileSync(join(dir, "report.tar"), tar);
    const { stdout } = await promisify(execFile)("tar", ["-xvf", "report.tar"], { cwd: dir });
    assert.deepEqual(stdout.trim().split("\n").sort(), [
      "README.md",
      "chart.png",
      "curves.json",
      "curves.png",
      "health.json",
      "table.json",
    ]);
    const readme = await readFile(join(dir, "README.md"), "utf8");
    for (const row of study.table) assert.ok(readme.includes(row.job.id));
    const table = JSON.parse(await readFile(join(dir, "table.json"), "utf8"));
    assert.equal(table.status, "SUCCEEDED");
    assert.deepEqual(
      table.methods.map((m: { method: string; succeeded: number }) => [m.method, m.succeeded]),
      [
        ["NO_DEFENSE", 2],
        ["TRAP_AND_REPLACE", 2],
      ],
    );
    const curves = JSON.parse(await readFile(join(dir, "curves.json"), "utf8"));
    assert.equal(curves.length, 4);
    assert.ok(curves.every((c: { points: number[] }) => c.points.length >= 1));
    const tnrCurve = curves.find((c: { label: string }) => c.label.startsWith("TRAP_AND_REPLACE"));
    assert.equal(tnrCurve.points.length, 4); // isolate, isolate-probe, stage 1, stage 2: one epoch each, in run order
    for (const png of ["chart.png", "curves.png"])
      assert.deepEqual([...(await readFile(join(dir, png))).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    const health = JSON.parse(await readFile(join(dir, "health.json"), "utf8"));
    assert.deepEqual(
      health.map((h: { method: string; verdict: string | null }) => [h.method, h.verdict !== null]),
      [
        ["NO_DEFENSE", false],
        ["NO_DEFENSE", false],
        ["TRAP_AND_REPLACE", true],
        ["TRAP_AND_REPLACE", true],
      ],
    );
    assert.equal((await read(studyId)).report?.sha256, study.report.sha256); // built once
  });

  it("trapdoor studies watch prints the table and exits by how the study ended", async () => {
    const env = { TRAPDOOR_ENDPOINT: app.url as string, TRAPDOOR_KEY: app.key };
    const run = await trapdoor(["studies", "watch", studyId], { env });
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split("\n");
    assert.equal(lines[0], `study ${studyId}: SUCCEEDED`);
    assert.match(lines[1] as string, /^METHOD\s+SEED\s+STATUS\s+ASR\s+CA\s+RUNTIME\s+HEALTH$/);
    assert.equal(lines.filter((l) => l.startsWith("TRAP_AND_REPLACE")).length, 2);
    const asJson = await trapdoor(["studies", "watch", studyId, "--json"], { env });
    assert.equal(JSON.parse(asJson.stdout.trim()).table.length, 4);
    const missing = await trapdoor(["studies", "watch", "00000000-0000-4000-8000-000000000000"], { env });
    assert.equal(missing.code, 2);
  });

  it("refuses what no child could run, naming the study's field, and keeps its idempotency key", async () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ seeds: [0, 1, 2] }, "methods", "BAD_USER_INPUT"], // 6 jobs > TRAPDOOR_MAX_STUDY_JOBS
      [{ seeds: [] }, "seeds", "BAD_USER_INPUT"],
      [{ seeds: [1, 1] }, "seeds", "BAD_USER_INPUT"],
      [
        { methods: [{ method: "NO_DEFENSE" }, { method: "NO_DEFENSE", hyperparameters: { epochs: 0 } }] },
        "methods[1].hyperparameters.epochs",
        "BAD_USER_INPUT",
      ],
      [{ methods: [{ method: "SCAN" }] }, "methods[0].method", "BAD_USER_INPUT"],
      [{ methods: [{ method: "NOPE" }] }, "methods[0].method", "BAD_USER_INPUT"],
    ];
    for (const [extra, field, code] of cases) {
      const res = await launch({ ...extra, idempotencyKey: `bad-${field}-${JSON.stringify(extra).length}` });
      assert.equal(res.errors?.[0]?.extensions?.code, code, JSON.stringify(res.errors));
      assert.equal(res.errors?.[0]?.extensions?.field, field);
    }
    const again = await launch({});
    assert.equal(again.data?.launchStudy.id, studyId);
    const conflict = await launch({ seeds: [3] });
    assert.equal(conflict.errors?.[0]?.extensions?.code, "CONFLICT");
  });

  it("cancelStudy stops every live job and the study ends CANCELLED", async () => {
    // On the GPU queue no worker runs here: the jobs wait QUEUED until cancelled.
    const res = await launch({ idempotencyKey: "study-gpu", seeds: [7], resources: { accelerator: "GPU" } });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const id = res.data?.launchStudy.id as string;
    const cancelled = await gql<{ cancelStudy: { id: string } }>(
      app.url as string,
      app.key,
      `mutation($id: ID!) { cancelStudy(id: $id) { id } }`,
      { id },
    );
    assert.equal(cancelled.errors, undefined, JSON.stringify(cancelled.errors));
    const study = await ended(id);
    assert.equal(study.status, "CANCELLED");
    assert.deepEqual(
      study.jobs.map((j) => j.status),
      ["CANCELLED", "CANCELLED"],
    );
    const twice = await gql(
      app.url as string,
      app.key,
      `mutation($id: ID!) { cancelStudy(id: $id) { id } }`,
      { id },
    );
    assert.equal(twice.errors?.[0]?.extensions?.code, "FAILED_PRECONDITION");
    const watched = await trapdoor(["studies", "watch", id], {
      env: { TRAPDOOR_ENDPOINT: app.url as string, TRAPDOOR_KEY: app.key },
    });
    assert.equal(watched.code, 3); // cancelled: as for a job that did not succeed
    const list = await gql<{ studies: { edges: { node: { id: string } }[] } }>(
      app.url as string,
      app.key,
      `{ studies(first: 10) { edges { node { id } } } }`,
    );
    assert.deepEqual(
      list.data?.studies.edges.map((e) => e.node.id),
      [id, studyId],
    );
  });
});
