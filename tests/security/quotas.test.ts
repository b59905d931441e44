/**
 * Abuse cases 3 (disk fill: a tiny archive decoding into hundreds of megabytes; no per-tenant
 * quota) and 10 (no length limits on names and class names).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { archiveOf, pngBytes } from "../datasets/archives.ts";
import { completeUpload, createUploadSession, gql, startTestApp, waitFor } from "../helpers/app.ts";
import { assertInvariants } from "../helpers/invariants.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const CREATE = `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id } } }`;
const VIEWER = `{ viewer { usage { bytes datasets liveJobs } quota { bytes datasets liveJobs } } }`;

/** 12 tiny greyscale PNGs in two class folders: a ~2 KB zip. */
function tinyClassFolders(): Buffer {
  const files: Array<[string, Uint8Array]> = [];
  for (let i = 0; i < 12; i++) files.push([`c${i % 2}/img${i}.png`, pngBytes(2, 2, 1, [i, 0, 0, i])]);
  return archiveOf("zip", files);
}

async function failedWith(app: TestApp, resize: number): Promise<{ code: string; reason: string }> {
  const zip = tinyClassFolders();
  const payload = await createUploadSession(app.url as string, app.key, {
    name: "bomb",
    role: "TRAIN",
    format: "CLASS_FOLDERS",
    sizeBytes: zip.length,
    sha256: createHash("sha256").update(zip).digest("hex"),
    options: { resize: { width: resize, height: resize }, channels: 1 },
  });
  const put = await fetch(payload.uploads[0]?.url as string, {
    method: "PUT",
    headers: payload.uploads[0]?.headers,
    body: new Uint8Array(zip),
  });
  assert.equal(put.status, 200);
  await completeUpload(app.url as string, app.key, payload.dataset.id);
  let result = { code: "", reason: "" };
  await waitFor("the bomb to fail", async () => {
    const res = await gql<{ dataset: { status: string; failureCode: string; failureReason: string } }>(
      app.url as string,
      app.key,
      `query($id: ID!) { dataset(id: $id) { status failureCode failureReason } }`,
      { id: payload.dataset.id },
    );
    const d = res.data?.dataset;
    assert.notEqual(d?.status, "READY", "a 4096x4096 resize of 12 images must not be stored");
    if (d?.status !== "FAILED") return false;
    result = { code: d.failureCode, reason: d.failureReason };
    return true;
  });
  // Nothing canonical was written for either upload: only the raw archives are in the store.
  const stored = await app.store.list("");
  assert.deepEqual(
    stored.filter((k) => k.includes("/canonical/")),
    [],
  );
  return result;
}

describe("abuse: disk fill and quotas (case 3)", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({
      TRAPDOOR_MAX_DECODED_BYTES: String(64 * 1024 ** 2),
      TRAPDOOR_TENANT_MAX_BYTES: String(150 * 1024 ** 2),
      TRAPDOOR_TENANT_MAX_DATASETS: "6",
    });
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  it("a 2 KB archive resized to 4096x4096 fails TOO_LARGE before a byte of it is decoded to disk", async () => {
    const { code, reason } = await failedWith(app, 4096);
    assert.equal(code, "TOO_LARGE", reason);
    assert.match(reason, /12 images of 4096x4096x1/);
  });

  it("under the deployment cap but over the tenant's room it fails QUOTA_EXCEEDED", async () => {
    // 12 × 2200² ≈ 58 MB decoded is under the 64 MiB cap, but the tenant has reserved 100 of its 150 MiB.
    const big = await gql(app.url as string, app.key, CREATE, {
      input: {
        name: "reserve",
        role: "TRAIN",
        format: "NPZ",
        sizeBytes: 100 * 1024 ** 2,
        sha256: "a".repeat(64),
      },
    });
    assert.ifError(big.errors?.[0]);
    const { code, reason } = await failedWith(app, 2200);
    assert.equal(code, "QUOTA_EXCEEDED", reason);
  });

  it("an upload larger than the room left is refused at create, before any URL or row exists", async () => {
    const before = await gql<{ viewer: { usage: { bytes: number; datasets: number } } }>(
      app.url as string,
      app.key,
      VIEWER,
    );
    const res = await gql(app.url as string, app.key, CREATE, {
      input: {
        name: "too big",
        role: "TRAIN",
        format: "NPZ",
        sizeBytes: 60 * 1024 ** 2,
        sha256: "b".repeat(64),
      },
    });
    assert.equal(res.errors?.[0]?.extensions?.code, "QUOTA_EXCEEDED", JSON.stringify(res));
    assert.equal(res.errors?.[0]?.extensions?.limit, "bytes");
    const now = await gql<typeof before.data>(app.url as string, app.key, VIEWER);
    assert.deepEqual(now.data?.viewer.usage, before.data?.viewer.usage);
  });

  it("viewer shows usage against quota, and the dataset count is capped too", async () => {
    const res = await gql<{
      viewer: { usage: { bytes: number; datasets: number; liveJobs: number }; quota: Record<string, number> };
    }>(app.url as string, app.key, VIEWER);
    const viewer = res.data?.viewer;
    assert.deepEqual(viewer?.quota, { bytes: 150 * 1024 ** 2, datasets: 6, liveJobs: 20 });
    assert.ok((viewer?.usage.bytes ?? 0) >= 100 * 1024 ** 2, JSON.stringify(viewer));
    assert.equal(viewer?.usage.liveJobs, 0);
    const left = 6 - (viewer?.usage.datasets ?? 0);
    for (let i = 0; i < left; i++) {
      const ok = await gql(app.url as string, app.key, CREATE, {
        input: { name: `n${i}`, role: "TEST", format: "NPZ", sizeBytes: 10, sha256: "c".repeat(64) },
      });
      assert.ifError(ok.errors?.[0]);
    }
    const over = await gql(app.url as string, app.key, CREATE, {
      input: { name: "one more", role: "TEST", format: "NPZ", sizeBytes: 10, sha256: "c".repeat(64) },
    });
    assert.equal(over.errors?.[0]?.extensions?.code, "QUOTA_EXCEEDED");
    assert.equal(over.errors?.[0]?.extensions?.limit, "datasets");
  });
});

describe("abuse: unbounded names (case 10)", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(async () => {
    await assertInvariants(app);
    await app.cleanup();
  });

  const refused = async (query: string, variables: Record<string, unknown>, field: string) => {
    const res = await gql(app.url as string, app.key, query, variables);
    assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(res).slice(0, 300));
    assert.equal(res.errors?.[0]?.extensions?.field, field);
    // The message stays short whatever was sent.
    assert.ok((res.errors?.[0]?.message.length ?? 0) < 300);
  };
  const upload = (extra: Record<string, unknown>) => ({
    input: { name: "d", role: "TRAIN", format: "NPZ", sizeBytes: 10, sha256: "d".repeat(64), ...extra },
  });

  it("createApiKey(name) over 100 characters", async () => {
    await refused(`mutation($n: String!) { createApiKey(name: $n) { id } }`, { n: "k".repeat(101) }, "name");
    await refused(`mutation($n: String!) { createApiKey(name: $n) { id } }`, { n: "   " }, "name");
  });

  it("a dataset name over 200 characters, a class name over 100, more than 25 000 class names", async () => {
    await refused(CREATE, upload({ name: "x".repeat(201) }), "name");
    await refused(CREATE, upload({ classNames: ["ok", "y".repeat(101)] }), "classNames[1]");
    await refused(
      CREATE,
      upload({ classNames: Array.from({ length: 25_001 }, (_, i) => `c${i}`) }),
      "classNames",
    );
  });

  it("a poisoned dataset's name over 200 characters, and oversized attack params", async () => {
    const poison = `mutation($input: PoisonDatasetInput!) { poisonDataset(input: $input) { dataset { id } } }`;
    const sourceId = "00000000-0000-4000-8000-000000000000";
    await refused(
      poison,
      { input: { sourceId, name: "p".repeat(201), attack: { name: "badnet", target: 0 } } },
      "name",
    );
    await refused(
      poison,
      { input: { sourceId, attack: { name: "badnet", target: 0, params: { blob: "z".repeat(20_000) } } } },
      "attack.params",
    );
  });

  it("a malformed or overlong ID is NOT_FOUND everywhere (one parser), never an internal error", async () => {
    for (const [query, vars] of [
      [`mutation($id: ID!) { revokeApiKey(id: $id) }`, { id: "x" }],
      [`mutation($id: ID!) { cancelJob(id: $id) { id } }`, { id: "x".repeat(5000) }],
      [`mutation($id: ID!) { deleteDataset(id: $id) }`, { id: "'; DROP TABLE datasets; --" }],
    ] as const) {
      const res = await gql(app.url as string, app.key, query, vars);
      assert.equal(res.errors?.[0]?.extensions?.code, "NOT_FOUND", JSON.stringify(res).slice(0, 300));
    }
    const page = await gql(
      app.url as string,
      app.key,
      `query($a: String) { jobs(after: $a) { edges { cursor } } }`,
      {
        a: Buffer.from(JSON.stringify(["2020-01-01", "not-a-uuid"])).toString("base64url"),
      },
    );
    assert.equal(page.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
  });
});
