/**
 * Health as data: scanDataset runs a SCAN job on the worker (real trainer), and job.health
 * gives its verdict, evidence and the ranked suspicious samples with thumbnails; a T&R job
 * carries the same report. Then the walkthrough: scan → sanitizeDataset → train on the
 * sanitized set, and the datasets' downloads (NPY_PAIR, NPZ read back by numpy).
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import sharp from "sharp";
import { createApiKey, createTenant } from "../../src/db/tenants.ts";
import {
  gql,
  launchJob,
  makeDatasets,
  python,
  startTestApp,
  uploadNpyPair,
  waitFor,
} from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

/** What the trainer attaches to a T&R report (bench/efficacy/calibrate.py writes it). */
const CALIBRATION_FILE = join(
  import.meta.dirname,
  "../../trainer/trapdoor_trainer/defenses/health_calibration.json",
);

interface Sample {
  rank: number;
  index: number;
  score: number;
  label: number;
  thumbnailUrl: string | null;
}
interface Page {
  edges: { cursor: string; node: Sample }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}
interface HealthJob {
  id: string;
  status: string;
  method: string;
  error: { code: string; message: string } | null;
  metrics: { ca: number | null; all: Record<string, unknown> } | null;
  artifacts: { kind: string; format: string }[];
  health: {
    verdict: string;
    likelyTarget: number | null;
    evidence: Record<string, unknown>;
    calibration: {
      fitErrors: number;
      source: string;
      outOfSample: { cells: number; falsePositiveRate: { rate: number | null; count: number; of: number } };
      groups: { name: string; rates: { cells: number } }[];
    } | null;
    sampleCount: number;
    suspicious: Page;
  } | null;
}

const SCAN = `mutation($input: ScanDatasetInput!) { scanDataset(input: $input) { id method status } }`;
const HEALTH = `query($id: ID!, $first: Int, $after: String) { job(id: $id) { id status method error { code message }
  metrics { ca all } artifacts { kind format }
  health { verdict likelyTarget evidence sampleCount
    calibration { fitErrors source outOfSample { cells falsePositiveRate { rate count of } } groups { name rates { cells } } }
    suspicious(first: $first, after: $after) { edges { cursor node { rank index score label thumbnailUrl } } pageInfo { hasNextPage endCursor } } } } }`;
/** Small and quick, yet a 25 % poisoned set is unmistakable (as in trainer/tests/test_scan.py). */
const SCAN_HP = { trapEpochs: 4, probeEpochs: 20, batchSize: 64, lr: 3e-3 };
const N_TRAIN = 1000;

/** A bool .npy (the synthetic set's poison_mask.npy), as booleans. */
function readBoolNpy(path: string): boolean[] {
  const bytes = readFileSync(path);
  const headerLength = bytes.readUInt16LE(8);
  return [...bytes.subarray(10 + headerLength)].map((b) => b === 1);
}

describe("health as data: scanDataset and job.health", () => {
  let app: TestApp;
  let data: Record<"train" | "holdout" | "test" | "asr", string>;
  let ids: Record<"train" | "holdout" | "test", string>;
  let scanId: string;

  const read = async (id: string, first = 20, after?: string, key = app.key) => {
    const res = await gql<{ job: HealthJob | null }>(app.url as string, key, HEALTH, { id, first, after });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    return res.data?.job as HealthJob;
  };
  const settled = (id: string) =>
    waitFor(
      `job ${id}`,
      async () => {
        const job = await read(id);
        return ["SUCCEEDED", "FAILED", "CANCELLED"].includes(job.status) ? job : null;
      },
      240_000,
    );
  const scan = (input: Record<string, unknown>) =>
    gql<{ scanDataset: { id: string; method: string; status: string } }>(app.url as string, app.key, SCAN, {
      input: {
        datasetId: ids.train,
        holdoutDatasetId: ids.holdout,
        architecture: "small-cnn",
        hyperparameters: SCAN_HP,
        ...input,
      },
    });

  before(async () => {
    app = await startTestApp();
    data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-scan-")), {
      nTrain: N_TRAIN,
      nHoldout: 200,
      nTest: 200,
      ratio: 0.25,
      seed: 6,
    });
    const url = app.url as string;
    ids = {
      train: await uploadNpyPair(url, app.key, data.train, "TRAIN"),
      holdout: await uploadNpyPair(url, app.key, data.holdout, "HOLDOUT"),
      test: await uploadNpyPair(url, app.key, data.test, "TEST"),
    };
    const res = await scan({ budget: "FAST", idempotencyKey: "scan-1" });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.equal(res.data?.scanDataset.method, "SCAN");
    scanId = res.data?.scanDataset.id as string;
  });

  after(async () => {
    await app?.cleanup();
  });

  it("a scan succeeds with a health report and no model", async () => {
    const job = await settled(scanId);
    assert.equal(job.status, "SUCCEEDED", JSON.stringify(job.error));
    assert.deepEqual(job.artifacts.map((a) => `${a.kind}/${a.format}`).sort(), [
      "health/json",
      "health/npy",
      "health/png",
    ]);
    assert.equal(job.metrics?.ca, null);
    assert.equal(job.metrics?.all.trapEpochs, 4);
    assert.ok(job.health);
    assert.equal(job.health.verdict, "POISONED", JSON.stringify(job.health.evidence));
    assert.equal(job.health.likelyTarget, 0);
    assert.equal(job.health.sampleCount, N_TRAIN);
    assert.equal((job.health.evidence.flaggedShare as number[]).length, 4);
    // The calibration was measured on T&R's isolation trap, not on the scan's shorter one.
    assert.equal(job.health.calibration, null);
  });

  it("health.suspicious ranks the poisoned samples first and pages by cursor", async () => {
    const mask = readBoolNpy(join(data.train, "poison_mask.npy"));
    const poisoned = mask.filter(Boolean).length;
    const seen: Sample[] = [];
    let after: string | undefined;
    while (seen.length < poisoned) {
      const page = (await read(scanId, 100, after)).health?.suspicious as Page;
      assert.equal(page.edges.length, Math.min(100, N_TRAIN - seen.length));
      seen.push(...page.edges.map((e) => e.node));
      assert.equal(page.pageInfo.endCursor, page.edges.at(-1)?.cursor);
      assert.equal(page.pageInfo.hasNextPage, true);
      after = page.pageInfo.endCursor as string;
    }
    assert.deepEqual(
      seen.map((s) => s.rank),
      seen.map((_, i) => i + 1),
    );
    for (let i = 1; i < seen.length; i++)
      assert.ok(
        (seen[i - 1] as Sample).score >= (seen[i] as Sample).score,
        `rank ${i + 1} scores above rank ${i}`,
      );
    const top = seen.slice(0, poisoned);
    const precision = top.filter((s) => mask[s.index]).length / poisoned;
    assert.ok(precision >= 0.9, `precision of the top ${poisoned}: ${precision}`);
    assert.ok(
      top.every((s) => !mask[s.index] || s.label === 0),
      "poisoned samples carry the target label",
    );
    const last = await read(scanId, 100, encodeRank(N_TRAIN - 10));
    assert.equal(last.health?.suspicious.edges.length, 10);
    assert.equal(last.health?.suspicious.pageInfo.hasNextPage, false);
  });

  it("the 200 most suspicious samples have thumbnails of their training image, the rest none", async () => {
    const first = (await read(scanId, 3)).health?.suspicious.edges.map((e) => e.node) as Sample[];
    const images = readFileSync(join(data.train, "images.npy"));
    const dataStart = 10 + images.readUInt16LE(8);
    for (const sample of first) {
      assert.ok(sample.thumbnailUrl);
      const res = await fetch(sample.thumbnailUrl);
      assert.equal(res.status, 200);
      const png = Buffer.from(await res.arrayBuffer());
      const meta = await sharp(png).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ["png", 64, 64, 1]); // 16 x 16, enlarged 4x
      const pixels = await sharp(png).extractChannel(0).raw().toBuffer();
      const original = images.subarray(dataStart + sample.index * 256, dataStart + (sample.index + 1) * 256);
      for (let y = 0; y < 64; y++)
        for (let x = 0; x < 64; x++) assert.equal(pixels[y * 64 + x], original[(y >> 2) * 16 + (x >> 2)]);
    }
    const around = (await read(scanId, 2, encodeRank(199))).health?.suspicious.edges.map((e) => e.node);
    assert.deepEqual(
      around?.map((s) => [s.rank, s.thumbnailUrl !== null]),
      [
        [200, true],
        [201, false],
      ],
    );
  });

  it("a T&R job carries the same kind of report", async () => {
    const id = await launchJob(app.url as string, app.key, {
      method: "TRAP_AND_REPLACE",
      architecture: "small-cnn",
      trainDatasetId: ids.train,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
      hyperparameters: {
        stage1Epochs: 1,
        stage2Epochs: 1,
        isolateProbeEpochs: 1,
        batchSize: 128,
        evalEvery: 0,
      },
      idempotencyKey: "tnr-1",
    });
    const job = await settled(id);
    assert.equal(job.status, "SUCCEEDED", JSON.stringify(job.error));
    assert.ok(job.health);
    assert.equal(job.health.sampleCount, N_TRAIN);
    assert.equal(job.health.suspicious.edges.length, 20);
    assert.ok(job.artifacts.some((a) => a.kind === "model"));
    // Ranked by the isolation pass, the report carries the trainer's measured calibration.
    const measured = JSON.parse(readFileSync(CALIBRATION_FILE, "utf8"));
    assert.ok(job.health.calibration, "a T&R report carries its calibration");
    assert.deepEqual(job.health.calibration.outOfSample, {
      cells: measured.outOfSample.cells,
      falsePositiveRate: measured.outOfSample.falsePositiveRate,
    });
    assert.deepEqual(
      job.health.calibration.groups.map((g) => [g.name, g.rates.cells]),
      measured.groups.map((g: { name: string; cells: number }) => [g.name, g.cells]),
    );
    assert.equal(job.health.calibration.source, measured.source);
  });

  it("scans refuse what they cannot use, naming the scan's own fields", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ datasetId: ids.holdout }, "datasetId"],
      [{ holdoutDatasetId: ids.test }, "holdoutDatasetId"],
      [{ budget: "THOROUGH", hyperparameters: { ...SCAN_HP, budget: "FAST" } }, "budget"],
      [{ hyperparameters: { trapEpochs: 0 } }, "hyperparameters.trapEpochs"],
    ];
    for (const [input, field] of cases) {
      const res = await scan({ idempotencyKey: `bad-${field}`, ...input });
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(res.errors));
      assert.equal(res.errors?.[0]?.extensions?.field, field);
    }
    const viaLaunch = await gql(
      app.url as string,
      app.key,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
      {
        input: {
          method: "SCAN",
          trainDatasetId: ids.train,
          holdoutDatasetId: ids.holdout,
          testDatasetId: ids.test,
          idempotencyKey: "launch-scan",
        },
      },
    );
    assert.equal(viaLaunch.errors?.[0]?.extensions?.field, "method");
  });

  const SANITIZE = `mutation($input: SanitizeDatasetInput!) { sanitizeDataset(input: $input) { id status role } }`;
  const DATASET = `query($id: ID!) { dataset(id: $id) { id status role format count failureReason
    derivedFrom { dataset { id } job { id } policy removedCount removedPoisonedCount } } }`;
  const sanitize = (input: Record<string, unknown>) =>
    gql<{ sanitizeDataset: { id: string; status: string; role: string } }>(
      app.url as string,
      app.key,
      SANITIZE,
      { input },
    );
  const download = async (id: string, format: string, part?: string) => {
    const res = await gql<{ dataset: { downloadUrl: string } }>(
      app.url as string,
      app.key,
      `query($id: ID!, $format: DatasetDownloadFormat!, $part: String) { dataset(id: $id) { downloadUrl(format: $format, part: $part) } }`,
      { id, format, part },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const got = await fetch(res.data?.dataset.downloadUrl as string);
    assert.equal(got.status, 200);
    return Buffer.from(await got.arrayBuffer());
  };
  let sanitizedId: string;

  it("sanitizeDataset drops the top of the scan's ranking into a new READY TRAIN set with its lineage", async () => {
    const res = await sanitize({ fromJobId: scanId, policy: { dropTopFraction: 0.25 }, name: "clean-ish" });
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.deepEqual(
      [res.data?.sanitizeDataset.status, res.data?.sanitizeDataset.role],
      ["VALIDATING", "TRAIN"],
    );
    sanitizedId = res.data?.sanitizeDataset.id as string;
    const ds = await waitFor("sanitized dataset", async () => {
      const r = await gql<{ dataset: Record<string, unknown> & { status: string } }>(
        app.url as string,
        app.key,
        DATASET,
        {
          id: sanitizedId,
        },
      );
      return r.data?.dataset.status === "VALIDATING" ? null : r.data?.dataset;
    });
    assert.equal(ds.status, "READY", String(ds.failureReason));
    assert.equal(ds.count, N_TRAIN * 0.75);
    assert.equal(ds.format, "CANONICAL");
    assert.deepEqual(ds.derivedFrom, {
      dataset: { id: ids.train },
      job: { id: scanId },
      policy: { dropTopFraction: 0.25 },
      removedCount: N_TRAIN * 0.25,
      removedPoisonedCount: null, // an uploaded set carries no ground truth
    });
    // Exactly the 250 most suspicious samples are gone, the rest kept in order.
    const ranked: number[] = [];
    let after: string | undefined;
    while (ranked.length < 250) {
      const page = (await read(scanId, 100, after)).health?.suspicious as Page;
      ranked.push(...page.edges.map((e) => e.node.index));
      after = page.pageInfo.endCursor as string;
    }
    const removed = new Set(ranked.slice(0, 250));
    const kept = Array.from({ length: N_TRAIN }, (_, i) => i).filter((i) => !removed.has(i));
    const images = readFileSync(join(data.train, "images.npy"));
    const start = 10 + images.readUInt16LE(8);
    const expected = Buffer.concat(kept.map((i) => images.subarray(start + i * 256, start + (i + 1) * 256)));
    const got = await download(sanitizedId, "NPY_PAIR", "images");
    assert.ok(got.subarray(10 + got.readUInt16LE(8)).equals(expected));
    const mask = readBoolNpy(join(data.train, "poison_mask.npy"));
    assert.ok(kept.filter((i) => mask[i]).length <= 25, "at most a tenth of the poison is left");
  });

  it("a model trains on the sanitized set", async () => {
    const id = await launchJob(app.url as string, app.key, {
      method: "NO_DEFENSE",
      architecture: "small-cnn",
      trainDatasetId: sanitizedId,
      holdoutDatasetId: ids.holdout,
      testDatasetId: ids.test,
      hyperparameters: { epochs: 1, batchSize: 128, evalEvery: 0 },
      idempotencyKey: "after-sanitize",
    });
    const job = await settled(id);
    assert.equal(job.status, "SUCCEEDED", JSON.stringify(job.error));
    assert.equal(job.health, null); // no health report: nothing to sanitize from
    const refused = await sanitize({ fromJobId: id, policy: { minScore: 1 } });
    assert.equal(refused.errors?.[0]?.extensions?.code, "FAILED_PRECONDITION");
  });

  it("sanitizeDataset refuses anything but exactly one valid rule", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{}, "policy"],
      [{ dropTopFraction: 0.1, minScore: 2 }, "policy"],
      [{ dropTopFraction: 1 }, "policy.dropTopFraction"],
      [{ indices: [0, N_TRAIN] }, "policy.indices"],
      [{ indices: [3, 3] }, "policy.indices"],
    ];
    for (const [policy, field] of cases) {
      const res = await sanitize({ fromJobId: scanId, policy });
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(res.errors));
      assert.equal(res.errors?.[0]?.extensions?.field, field);
    }
    const unknown = await sanitize({
      fromJobId: "00000000-0000-4000-8000-000000000000",
      policy: { minScore: 1 },
    });
    assert.equal(unknown.errors?.[0]?.extensions?.code, "NOT_FOUND");
    // CANONICAL names what the service makes; it is no upload format.
    const upload = await gql(
      app.url as string,
      app.key,
      `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { uploadUrl } }`,
      {
        input: { name: "x", role: "TRAIN", format: "CANONICAL", sizeBytes: 10, sha256: "0".repeat(64) },
      },
    );
    assert.equal(upload.errors?.[0]?.extensions?.field, "format");
  });

  it("every dataset downloads as NPZ (read back by numpy) and as its two NPY files", async () => {
    const npz = await download(sanitizedId, "NPZ");
    const again = await download(sanitizedId, "NPZ"); // built once, then served as stored
    assert.ok(npz.equals(again));
    const dir = mkdtempSync(join(tmpdir(), "trapdoor-npz-"));
    writeFileSync(join(dir, "d.npz"), npz);
    writeFileSync(join(dir, "images.npy"), await download(sanitizedId, "NPY_PAIR", "images"));
    writeFileSync(join(dir, "labels.npy"), await download(sanitizedId, "NPY_PAIR", "labels"));
    const script = `import numpy as np, sys, zipfile
d = np.load(sys.argv[1] + "/d.npz", allow_pickle=False)
assert zipfile.ZipFile(sys.argv[1] + "/d.npz").testzip() is None
assert sorted(d.files) == ["images", "labels"], d.files
assert np.array_equal(d["images"], np.load(sys.argv[1] + "/images.npy")) and d["images"].shape == (750, 16, 16, 1)
assert np.array_equal(d["labels"], np.load(sys.argv[1] + "/labels.npy")) and d["labels"].dtype == np.int64
print("ok")`;
    const { stdout } = await promisify(execFile)(python, ["-c", script, dir]);
    assert.equal(stdout.trim(), "ok");
    const badPart = await gql(
      app.url as string,
      app.key,
      `query($id: ID!) { dataset(id: $id) { downloadUrl(format: NPY_PAIR) } }`,
      {
        id: sanitizedId,
      },
    );
    assert.equal(badPart.errors?.[0]?.extensions?.field, "part");
  });

  it("the same idempotencyKey returns the same scan; another tenant sees nothing", async () => {
    const again = await scan({ budget: "FAST", idempotencyKey: "scan-1" });
    assert.equal(again.data?.scanDataset.id, scanId);
    const other = await createTenant(app.db, "other");
    const key = (await createApiKey(app.db, other.id, "k")).key;
    assert.equal(await read(scanId, 20, undefined, key), null);
    const cursor = await gql(app.url as string, app.key, HEALTH, {
      id: scanId,
      first: 5,
      after: "not-a-cursor",
    });
    assert.equal(cursor.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
  });
});

function encodeRank(rank: number): string {
  return Buffer.from(`rank:${rank}`).toString("base64url");
}
