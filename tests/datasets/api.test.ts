import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { keys } from "../../src/storage/keys.ts";
import { gql, sha256, startTestApp, waitFor } from "../helpers/app.ts";
import { archiveOf, pngBytes, tarBytes } from "./archives.ts";
import { loadInTrainer, pattern, scratch } from "./helpers.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const DATASET =
  "id status failureCode failureReason format count height width channels numClasses classNames classHistogram";
const CREATE = `mutation($input: CreateDatasetUploadInput!) {
  createDatasetUpload(input: $input) { dataset { id status } uploads { part url headers } } }`;

interface Dataset {
  id: string;
  status: string;
  failureCode: string | null;
  failureReason: string | null;
  count: number | null;
  height: number | null;
  width: number | null;
  channels: number | null;
  numClasses: number | null;
  classNames: string[] | null;
  classHistogram: number[] | null;
}

/** createDatasetUpload → PUT the archive → completeDatasetUpload; returns the dataset id. */
async function uploadArchive(
  app: TestApp,
  format: string,
  archive: Buffer,
  options?: object,
): Promise<string> {
  const created = await gql<{
    createDatasetUpload: {
      dataset: { id: string };
      uploads: { url: string; headers: Record<string, string> }[];
    };
  }>(app.url as string, app.key, CREATE, {
    input: {
      name: `${format} upload`,
      role: "TRAIN",
      format,
      sizeBytes: archive.length,
      sha256: sha256(archive),
      options,
    },
  });
  assert.equal(created.errors, undefined, JSON.stringify(created.errors));
  const payload = created.data?.createDatasetUpload;
  assert.ok(payload);
  for (const target of payload.uploads) {
    const res = await fetch(target.url, {
      method: "PUT",
      headers: target.headers,
      body: new Uint8Array(archive),
    });
    assert.ok(res.status < 300, `upload: ${res.status}`);
  }
  const done = await gql(
    app.url as string,
    app.key,
    "mutation($id: ID!) { completeDatasetUpload(id: $id) { id } }",
    {
      id: payload.dataset.id,
    },
  );
  assert.equal(done.errors, undefined, JSON.stringify(done.errors));
  return payload.dataset.id;
}

async function settled(app: TestApp, id: string): Promise<Dataset> {
  return waitFor(`dataset ${id}`, async () => {
    const res = await gql<{ dataset: Dataset }>(
      app.url as string,
      app.key,
      `query($id: ID!) { dataset(id: $id) { ${DATASET} } }`,
      {
        id,
      },
    );
    const dataset = res.data?.dataset;
    return dataset && (dataset.status === "READY" || dataset.status === "FAILED") ? dataset : null;
  });
}

/** A class-folder archive: `perClass` RGB PNGs of assorted sizes in each class folder. */
function classFolderArchive(classes: string[], perClass: number): Buffer {
  const files: Array<[string, Uint8Array]> = [];
  classes.forEach((name, k) => {
    for (let i = 0; i < perClass; i++) {
      const [w, h] = [10 + i, 12 - k];
      files.push([`photos/${name}/${i}.png`, pngBytes(w, h, 3, pattern(w * h * 3, k * 50 + i + 1))]);
    }
  });
  return archiveOf("tar.gz", files);
}

describe("archive formats through the GraphQL API (embedded Postgres, local store)", () => {
  let app: TestApp;
  let tenant: string;

  before(async () => {
    app = await startTestApp();
    const viewer = await gql<{ viewer: { id: string } }>(app.url as string, app.key, "{ viewer { id } }");
    tenant = viewer.data?.viewer.id as string;
  });

  after(async () => {
    await app?.cleanup();
  });

  it("a CLASS_FOLDERS archive with resize becomes READY with its shape and classes; the trainer reads it", async () => {
    const id = await uploadArchive(app, "CLASS_FOLDERS", classFolderArchive(["owl", "cat", "dog"], 4), {
      resize: { width: 8, height: 6 },
    });
    const dataset = await settled(app, id);
    assert.equal(dataset.status, "READY", dataset.failureReason ?? "");
    assert.deepEqual(
      [dataset.count, dataset.height, dataset.width, dataset.channels, dataset.numClasses],
      [12, 6, 8, 3, 3],
    );
    assert.deepEqual(dataset.classNames, ["cat", "dog", "owl"]);
    assert.deepEqual(dataset.classHistogram, [4, 4, 4]);
    const dir = scratch("trapdoor-api-ingest-");
    for (const file of ["images.npy", "labels.npy", "manifest.json"]) {
      await app.store.downloadToFile(keys.datasetCanonical(tenant, id, file), join(dir, file));
    }
    // owl (label 2) first, then cat (0), then dog (1): 4 each
    assert.equal(loadInTrainer(dir), `(12, 6, 8, 3) ${4 * 2 + 4 * 1}`);
  });

  it("a hostile archive ends FAILED with its code, and nothing is stored or left in scratch", async () => {
    const evil = gzipSync(
      tarBytes([
        { name: "a/1.png", data: pngBytes(1, 1, 1, [1]) },
        { name: "../../outside/b/1.png", data: pngBytes(1, 1, 1, [2]) },
      ]),
    );
    const id = await uploadArchive(app, "CLASS_FOLDERS", evil);
    const dataset = await settled(app, id);
    assert.equal(dataset.status, "FAILED");
    assert.match(dataset.failureReason ?? "", /^UNSAFE_PATH: /);
    assert.equal(dataset.failureCode, "UNSAFE_PATH");
    assert.equal(dataset.count, null);
    for (const file of ["images.npy", "labels.npy", "manifest.json"]) {
      assert.equal(await app.store.stat(keys.datasetCanonical(tenant, id, file)), null);
    }
    // The worker removes its scratch directory right after recording the outcome.
    const scratchDir = join(app.dir, "scratch");
    await waitFor("the ingest's scratch directory to go", async () =>
      existsSync(scratchDir) ? readdirSync(scratchDir).length === 0 : true,
    );
  });

  it("mixed sizes without resize fail with MIXED_SIZES", async () => {
    const id = await uploadArchive(app, "CLASS_FOLDERS", classFolderArchive(["a", "b"], 2));
    const dataset = await settled(app, id);
    assert.equal(dataset.status, "FAILED");
    assert.match(dataset.failureReason ?? "", /^MIXED_SIZES: .*resize/);
    assert.equal(dataset.failureCode, "MIXED_SIZES");
  });

  it("options are checked at upload: BAD_USER_INPUT naming the field", async () => {
    const archive = classFolderArchive(["a", "b"], 1);
    const cases: Array<[string, object | undefined, string]> = [
      ["CIFAR10_BINARY", undefined, "options.split"],
      ["CLASS_FOLDERS", { cropToRoi: true }, "options.cropToRoi"],
      ["GTSRB", { channels: 2 }, "options.channels"],
      ["NPZ", { resize: { width: 4, height: 4 } }, "options.resize"],
    ];
    for (const [format, options, field] of cases) {
      const res = await gql(app.url as string, app.key, CREATE, {
        input: {
          name: "x",
          role: "TRAIN",
          format,
          sizeBytes: archive.length,
          sha256: sha256(archive),
          options,
        },
      });
      assert.equal(res.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(res));
      assert.equal(res.errors?.[0]?.extensions?.field, field);
    }
    const resize = await gql(app.url as string, app.key, CREATE, {
      input: {
        name: "x",
        role: "TRAIN",
        format: "CLASS_FOLDERS",
        sizeBytes: archive.length,
        sha256: sha256(archive),
        options: { resize: { width: 0, height: 4 } },
      },
    });
    assert.equal(resize.errors?.[0]?.extensions?.field, "options.resize.width");
  });
});
