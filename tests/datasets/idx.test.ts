import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { ingest } from "../../src/datasets/ingest.ts";
import {
  assertCanonical,
  encode,
  IDX_CODES,
  idxBytes,
  ingestBytes,
  ingestFails,
  loadInTrainer,
  pattern,
  scratch,
} from "./helpers.ts";

const N = 6;
const pixels = pattern(N * 5 * 4, 3);
const labels = [0, 1, 2, 3, 1, 0];
const rawImages = idxBytes(IDX_CODES.u1, [N, 5, 4], pixels);
const rawLabels = idxBytes(IDX_CODES.u1, [N], Uint8Array.from(labels));

describe("IDX ingest", () => {
  it("raw and gzipped parts, in every combination, round-trip exactly", async () => {
    for (const gzImages of [false, true]) {
      for (const gzLabels of [false, true]) {
        const { out, manifest } = await ingestBytes("IDX", {
          images: gzImages ? gzipSync(rawImages) : rawImages,
          labels: gzLabels ? gzipSync(rawLabels) : rawLabels,
        });
        assertCanonical(out, [N, 5, 4, 1], pixels, labels);
        assert.deepEqual(manifest.classHistogram, [2, 2, 1, 1]);
      }
    }
  });

  it("compression is sniffed from the bytes, not the file name", async () => {
    const { out } = await ingestBytes(
      "IDX",
      { images: gzipSync(rawImages), labels: rawLabels },
      { fileNames: { images: "images-idx3-ubyte", labels: "labels-idx1-ubyte.gz" } },
    );
    assertCanonical(out, [N, 5, 4, 1], pixels, labels);
  });

  it("float IDX images in [0, 1], 4-D N×H×W×3 images and int32 labels", async () => {
    const codes = pattern(N * 2 * 3 * 3, 4);
    const floats = encode(
      ">f4",
      Array.from(codes, (v) => v / 255),
    );
    const wide = idxBytes(IDX_CODES.i4, [N], encode(">i4", labels));
    const { out } = await ingestBytes("IDX", {
      images: gzipSync(idxBytes(IDX_CODES.f4, [N, 2, 3, 3], floats)),
      labels: wide,
    });
    assertCanonical(out, [N, 2, 3, 3], codes, labels);
    assert.equal(loadInTrainer(out), `(${N}, 2, 3, 3) ${labels.reduce((a, b) => a + b)}`);
  });

  const fashion = "/usr/share/datasets/fashion-mnist";
  const haveFashion = existsSync(join(fashion, "train-images-idx3-ubyte.gz"));
  it("the real Fashion-MNIST training set: 60000×28×28×1, 6000 per class", {
    skip: !haveFashion && "Fashion-MNIST is not installed",
  }, async () => {
    const out = join(scratch("trapdoor-fmnist-"), "out");
    const manifest = await ingest(
      {
        format: "IDX",
        parts: {
          images: join(fashion, "train-images-idx3-ubyte.gz"),
          labels: join(fashion, "train-labels-idx1-ubyte.gz"),
        },
      },
      out,
    );
    assert.deepEqual(
      [manifest.count, manifest.height, manifest.width, manifest.channels, manifest.numClasses],
      [60000, 28, 28, 1, 10],
    );
    assert.deepEqual(manifest.classHistogram, new Array(10).fill(6000));
    assert.equal(loadInTrainer(out), "(60000, 28, 28, 1) 270000");
  });
});

describe("IDX rejections leave nothing behind", () => {
  it("BAD_HEADER: not IDX (with a hint when it is an NPY file), unknown type code, zero dimensions", async () => {
    const npy = Buffer.concat([
      Buffer.from([0x93]),
      Buffer.from("NUMPY\x01\x00", "latin1"),
      Buffer.alloc(120, 0x20),
    ]);
    const error = await ingestFails("IDX", { images: npy, labels: rawLabels }, "BAD_HEADER");
    assert.match(error.message, /NPY_PAIR/);
    await ingestFails("IDX", { images: idxBytes(0x07, [N, 5, 4], pixels), labels: rawLabels }, "BAD_HEADER");
    await ingestFails("IDX", { images: Buffer.from([0, 0, 8, 0]), labels: rawLabels }, "BAD_HEADER");
  });

  it("TRUNCATED: raw and gzipped data shorter than the header promises", async () => {
    const cut = rawImages.subarray(0, rawImages.length - 3);
    await ingestFails("IDX", { images: cut, labels: rawLabels }, "TRUNCATED");
    await ingestFails("IDX", { images: gzipSync(cut), labels: rawLabels }, "TRUNCATED");
    const gz = gzipSync(rawImages);
    await ingestFails("IDX", { images: gz.subarray(0, gz.length - 12), labels: rawLabels }, "TRUNCATED");
  });

  it("TRAILING_DATA: raw or gzipped data longer than the header promises", async () => {
    const longer = Buffer.concat([rawImages, Buffer.from([1, 2])]);
    await ingestFails("IDX", { images: longer, labels: rawLabels }, "TRAILING_DATA");
    await ingestFails("IDX", { images: gzipSync(longer), labels: rawLabels }, "TRAILING_DATA");
  });

  it("CORRUPT: a gzip stream with a bad checksum", async () => {
    const gz = gzipSync(rawImages);
    gz.writeUInt32LE(gz.readUInt32LE(gz.length - 8) ^ 1, gz.length - 8); // CRC-32 in the trailer
    await ingestFails("IDX", { images: gz, labels: rawLabels }, "CORRUPT");
  });

  it("COUNT_MISMATCH and UNSUPPORTED_DTYPE", async () => {
    const fewer = idxBytes(IDX_CODES.u1, [N - 1], Uint8Array.from(labels.slice(1)));
    await ingestFails("IDX", { images: rawImages, labels: gzipSync(fewer) }, "COUNT_MISMATCH");
    const shorts = idxBytes(IDX_CODES.i2, [N, 5, 4], encode(">i2", Array.from(pixels)));
    await ingestFails("IDX", { images: shorts, labels: rawLabels }, "UNSUPPORTED_DTYPE");
    const floatLabels = idxBytes(IDX_CODES.f4, [N], encode(">f4", labels));
    await ingestFails("IDX", { images: rawImages, labels: floatLabels }, "UNSUPPORTED_DTYPE");
  });
});
