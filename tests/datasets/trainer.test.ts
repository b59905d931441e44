import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import {
  encode,
  IDX_CODES,
  idxBytes,
  ingestBytes,
  loadInTrainer,
  npy,
  npyBytes,
  pattern,
  zipBytes,
} from "./helpers.ts";

/** Every format's output passes the trainer's own loader (shape, dtypes, sha256, label range). */
describe("ingested datasets load in the Python trainer", () => {
  const n = 40;
  const labels = Array.from({ length: n }, (_, i) => (i * 7) % 10);
  const labelSum = labels.reduce((a, b) => a + b, 0);

  it("NPY_PAIR: float32 N×C×H×W with big-endian int16 labels", async () => {
    const values = Array.from(pattern(n * 3 * 8 * 6, 1), (v) => v / 255);
    const { out } = await ingestBytes("NPY_PAIR", {
      images: npy("<f4", [n, 3, 8, 6], values),
      labels: npy(">i2", [n], labels),
    });
    assert.equal(loadInTrainer(out), `(${n}, 8, 6, 3) ${labelSum}`);
  });

  it("NPZ: deflated x_train/y_train, N×H×W uint8", async () => {
    const { out } = await ingestBytes("NPZ", {
      archive: zipBytes([
        { name: "x_train.npy", data: npyBytes("|u1", [n, 9, 7], pattern(n * 63, 2)), method: "deflate" },
        { name: "y_train.npy", data: npy("<u8", [n], labels), method: "deflate" },
      ]),
    });
    assert.equal(loadInTrainer(out), `(${n}, 9, 7, 1) ${labelSum}`);
  });

  it("IDX: gzipped images, raw labels, numClasses and classNames given", async () => {
    const names = [
      "zero",
      "one",
      "two",
      "three",
      "four",
      "five",
      "six",
      "seven",
      "eight",
      "nine",
      "ten",
      "eleven",
    ];
    const { out, manifest } = await ingestBytes(
      "IDX",
      {
        images: gzipSync(idxBytes(IDX_CODES.u1, [n, 5, 5, 3], pattern(n * 75, 3))),
        labels: idxBytes(IDX_CODES.i2, [n], encode(">i2", labels)),
      },
      { numClasses: 12, classNames: names },
    );
    assert.equal(manifest.numClasses, 12);
    assert.equal(loadInTrainer(out), `(${n}, 5, 5, 3) ${labelSum}`);
  });
});
