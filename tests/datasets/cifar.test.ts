import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { archiveOf, type TarEntry, tarBytes, toPlanes } from "./archives.ts";
import { assertCanonical, ingestBytes, ingestFails, loadInTrainer, pattern } from "./helpers.ts";

const PIXELS = 32 * 32;
const NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const META = Buffer.from(`${NAMES.join("\n")}\n\n`);

interface Batch {
  bytes: Buffer;
  /** expected canonical pixels (H×W×C) and labels */
  pixels: Buffer;
  labels: number[];
}

/** A batch of n records whose images are pseudo-random HWC pixels, stored as CIFAR planes. */
function batch(n: number, seed: number, label = (i: number) => (i * 3 + seed) % 10): Batch {
  const records: Buffer[] = [];
  const pixels: Buffer[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const hwc = pattern(PIXELS * 3, seed * 1000 + i + 1);
    records.push(Buffer.from([label(i)]), toPlanes(hwc, PIXELS));
    pixels.push(Buffer.from(hwc));
    labels.push(label(i));
  }
  return { bytes: Buffer.concat(records), pixels: Buffer.concat(pixels), labels };
}

const dir = "cifar-10-batches-bin/";
const train = [1, 2, 3, 4, 5].map((k) => batch(k + 1, k));
const test = batch(12, 9);

/** The archive's members in the order the distributed tar stores them (data_batch_2 last). */
function members(order = [1, 3, 4, 5, 2], extra: TarEntry[] = []): TarEntry[] {
  const batches = order.map((k) => ({
    name: `${dir}data_batch_${k}.bin`,
    data: (train[k - 1] as Batch).bytes,
  }));
  return [
    { name: dir, type: "directory" },
    batches[0] as TarEntry,
    { name: `${dir}batches.meta.txt`, data: META },
    ...batches.slice(1, 3),
    { name: `${dir}test_batch.bin`, data: test.bytes },
    { name: `${dir}readme.html`, data: Buffer.from("<html></html>") },
    ...batches.slice(3),
    ...extra,
  ];
}

const expectedTrain = {
  pixels: Buffer.concat(train.map((b) => b.pixels)),
  labels: train.flatMap((b) => b.labels),
};

describe("CIFAR10_BINARY ingest", () => {
  it("TRAIN: data_batch_1..5 in batch order whatever the archive order, pixel for pixel (tar.gz)", async () => {
    const { out, manifest } = await ingestBytes(
      "CIFAR10_BINARY",
      { archive: gzipSync(tarBytes(members())) },
      { options: { split: "TRAIN" } },
    );
    assertCanonical(out, [20, 32, 32, 3], expectedTrain.pixels, expectedTrain.labels);
    assert.deepEqual(manifest.classNames, NAMES);
    assert.equal(manifest.numClasses, 10);
    assert.equal(manifest.sourceFormat, "CIFAR10_BINARY");
  });

  it("TEST: test_batch only; uncompressed tar and zip are accepted", async () => {
    const { out } = await ingestBytes(
      "CIFAR10_BINARY",
      { archive: tarBytes(members([5, 4, 3, 2, 1])) },
      { options: { split: "TEST" } },
    );
    assertCanonical(out, [12, 32, 32, 3], test.pixels, test.labels);
    const zip = archiveOf(
      "zip",
      members().flatMap((m) =>
        m.type === "directory" ? [] : [[m.name, m.data as Uint8Array] as [string, Uint8Array]],
      ),
    );
    const fromZip = await ingestBytes("CIFAR10_BINARY", { archive: zip }, { options: { split: "TRAIN" } });
    assertCanonical(fromZip.out, [20, 32, 32, 3], expectedTrain.pixels, expectedTrain.labels);
  });

  it("without batches.meta.txt the classes are 0..9", async () => {
    const { manifest } = await ingestBytes(
      "CIFAR10_BINARY",
      { archive: tarBytes(members().filter((m) => !m.name.endsWith("meta.txt"))) },
      { options: { split: "TEST" } },
    );
    assert.deepEqual(manifest.classNames, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  });

  it("the canonical output loads in the Python trainer", async () => {
    const { out } = await ingestBytes(
      "CIFAR10_BINARY",
      { archive: gzipSync(tarBytes(members())) },
      { options: { split: "TRAIN" } },
    );
    const labelSum = expectedTrain.labels.reduce((a, b) => a + b, 0);
    assert.equal(loadInTrainer(out), `(20, 32, 32, 3) ${labelSum}`);
  });
});

describe("CIFAR10_BINARY rejections: a typed IngestError, nothing left on disk", () => {
  const fails = (entries: TarEntry[], code: string, options: object = { split: "TRAIN" }) =>
    ingestFails("CIFAR10_BINARY", { archive: gzipSync(tarBytes(entries)) }, code, { options });

  it("BAD_OPTION: the split is required", async () => {
    const error = await fails(members(), "BAD_OPTION", {});
    assert.equal(error.field, "split");
    await fails(members(), "BAD_OPTION", { split: "VALIDATION" });
    await fails(members(), "BAD_OPTION", { split: "TRAIN", resize: { width: 8, height: 8 } });
  });

  it("LABEL_OUT_OF_RANGE: a label byte at or above the number of class names", async () => {
    const bad = batch(3, 7, (i) => (i === 2 ? 10 : 1));
    const entries = members([1, 2, 3, 4], [{ name: `${dir}data_batch_5.bin`, data: bad.bytes }]);
    const error = await fails(entries, "LABEL_OUT_OF_RANGE");
    assert.match(error.message, /data_batch_5\.bin: record 2 has label 10/);
    const fewNames = members().map((m) =>
      m.name.endsWith("meta.txt") ? { ...m, data: Buffer.from("a\nb\nc\n") } : m,
    );
    await fails(fewNames, "LABEL_OUT_OF_RANGE");
  });

  it("TOO_MANY_CLASSES: fewer images than the 10 classes", async () => {
    const small = members().map((m) =>
      m.name.endsWith("test_batch.bin") ? { ...m, data: batch(4, 3).bytes } : m,
    );
    await fails(small, "TOO_MANY_CLASSES", { split: "TEST" });
  });

  it("MISSING_FILE: a batch of the split is absent", async () => {
    const error = await fails(
      members([1, 2, 4, 5]).filter((m) => !m.name.includes("_3")),
      "MISSING_FILE",
    );
    assert.match(error.message, /data_batch_3\.bin/);
    await fails(
      members().filter((m) => !m.name.endsWith("test_batch.bin")),
      "MISSING_FILE",
      { split: "TEST" },
    );
  });

  it("TRUNCATED: a batch that is not whole records, or an archive cut short", async () => {
    const short = members().map((m) =>
      m.name.endsWith("data_batch_4.bin")
        ? { ...m, data: (m.data as Buffer).subarray(0, 3073 * 2 + 100) }
        : m,
    );
    await fails(short, "TRUNCATED");
    const gz = gzipSync(tarBytes(members()));
    await ingestFails("CIFAR10_BINARY", { archive: gz.subarray(0, gz.length >> 1) }, "TRUNCATED", {
      options: { split: "TRAIN" },
    });
  });

  it("BAD_ARCHIVE: a batch twice; UNSAFE_PATH: a batch outside the archive", async () => {
    await fails(
      [...members(), { name: `copy/data_batch_2.bin`, data: (train[1] as Batch).bytes }],
      "BAD_ARCHIVE",
    );
    await fails([...members(), { name: `../data_batch_9.bin`, data: Buffer.alloc(3073) }], "UNSAFE_PATH");
  });
});
