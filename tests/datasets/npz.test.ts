import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  assertCanonical,
  ingestBytes,
  ingestFails,
  nchwToNhwc,
  npy,
  npyBytes,
  pattern,
  readNpy,
  runPython,
  scratch,
  zipBytes,
} from "./helpers.ts";

const images = (n: number, seed: number) => pattern(n * 4 * 4 * 3, seed);
const imagesNpy = (n: number, seed: number) => npyBytes("|u1", [n, 4, 4, 3], images(n, seed));

describe("NPZ ingest", () => {
  it("stored and deflated members round-trip exactly", async () => {
    for (const method of ["stored", "deflate"] as const) {
      const labels = [0, 1, 2, 0, 1];
      const archive = zipBytes([
        { name: "images.npy", data: imagesNpy(5, 1), method },
        { name: "labels.npy", data: npy("<i8", [5], labels), method },
      ]);
      const { out, manifest } = await ingestBytes("NPZ", { archive });
      assertCanonical(out, [5, 4, 4, 3], images(5, 1), labels);
      assert.equal(manifest.sourceFormat, "NPZ");
    }
  });

  it("x/y and x_train/y_train member names; images/labels win; other members are ignored", async () => {
    const xy = await ingestBytes("NPZ", {
      archive: zipBytes([
        { name: "y.npy", data: npy("|u1", [3], [1, 0, 1]) },
        { name: "x.npy", data: imagesNpy(3, 2), method: "deflate" },
      ]),
    });
    assertCanonical(xy.out, [3, 4, 4, 3], images(3, 2), [1, 0, 1]);

    const keras = await ingestBytes("NPZ", {
      archive: zipBytes([
        { name: "notes/", data: new Uint8Array(0) },
        { name: "x_test.npy", data: imagesNpy(2, 9) },
        { name: "y_test.npy", data: npy("|u1", [2], [7, 7]) },
        { name: "x_train.npy", data: imagesNpy(4, 3) },
        { name: "y_train.npy", data: npy("|u1", [4, 1], [0, 1, 1, 0]) },
        { name: "README.txt", data: Buffer.from("hello") },
      ]),
    });
    assertCanonical(keras.out, [4, 4, 4, 3], images(4, 3), [0, 1, 1, 0]);

    const both = await ingestBytes("NPZ", {
      archive: zipBytes([
        { name: "x.npy", data: imagesNpy(2, 5) },
        { name: "y.npy", data: npy("|u1", [2], [0, 1]) },
        { name: "images.npy", data: imagesNpy(3, 6) },
        { name: "labels.npy", data: npy("|u1", [3], [1, 1, 0]) },
      ]),
    });
    assertCanonical(both.out, [3, 4, 4, 3], images(3, 6), [1, 1, 0]);
  });

  it("archives from np.savez and np.savez_compressed (zip64 local headers) are read", async () => {
    const dir = scratch();
    const labels = runPython(
      [
        "import sys, numpy as np",
        "d = sys.argv[1]; rng = np.random.default_rng(1)",
        "x = rng.integers(0, 256, size=(9, 3, 8, 7)).astype(np.uint8)",
        "y = rng.integers(0, 4, size=9).astype(np.int64); y[:4] = [0, 1, 2, 3]",
        "np.savez(d + '/plain.npz', images=x, labels=y)",
        "np.savez_compressed(d + '/packed.npz', x_train=(x / 255).astype(np.float32), y_train=y.astype('>u4'))",
        "np.save(d + '/expected.npy', np.ascontiguousarray(x.transpose(0, 2, 3, 1)))",
        "print(' '.join(map(str, y.tolist())))",
      ].join("\n"),
      dir,
    )
      .trim()
      .split(" ")
      .map(Number);
    const expected = readNpy(join(dir, "expected.npy")).data;
    for (const file of ["plain.npz", "packed.npz"]) {
      const { out } = await ingestBytes("NPZ", { archive: readFileSync(join(dir, file)) });
      assertCanonical(out, [9, 8, 7, 3], expected, labels);
    }
  });

  it("a deflated member larger than one chunk streams through", async () => {
    const [n, c, h, w] = [700, 3, 64, 64]; // 8.6 MB of pixels: more than one 8 MiB chunk
    const pixels = pattern(n * c * h * w, 8);
    const labels = Array.from({ length: n }, (_, i) => i % 3);
    const { out } = await ingestBytes("NPZ", {
      archive: zipBytes([
        { name: "images.npy", data: npyBytes("|u1", [n, c, h, w], pixels), method: "deflate" },
        { name: "labels.npy", data: npy("<i8", [n], labels), method: "deflate" },
      ]),
    });
    assertCanonical(out, [n, h, w, c], nchwToNhwc(pixels, n, c, h, w), labels);
  });
});

describe("NPZ rejections leave nothing behind", () => {
  const good = () => [
    { name: "images.npy", data: imagesNpy(3, 1) },
    { name: "labels.npy", data: npy("<i8", [3], [0, 1, 0]) },
  ];

  it("UNSAFE_PATH: absolute paths, drive letters and '..' segments", async () => {
    for (const name of ["/tmp/images.npy", "../labels.npy", "data/../../x.npy", "C:/images.npy"]) {
      await ingestFails(
        "NPZ",
        { archive: zipBytes([...good(), { name, data: npy("|u1", [1], [0]) }]) },
        "UNSAFE_PATH",
      );
    }
  });

  it("MISSING_PART: no known members, or half a pair", async () => {
    const error = await ingestFails(
      "NPZ",
      { archive: zipBytes([{ name: "arr_0.npy", data: imagesNpy(3, 1) }]) },
      "MISSING_PART",
    );
    assert.match(error.message, /arr_0\.npy/);
    const half = await ingestFails(
      "NPZ",
      { archive: zipBytes([{ name: "images.npy", data: imagesNpy(3, 1) }]) },
      "MISSING_PART",
    );
    assert.match(half.message, /no labels\.npy/);
  });

  it("TOO_LARGE: maxBytes, and a zip bomb's compression ratio", async () => {
    await ingestFails("NPZ", { archive: zipBytes(good()) }, "TOO_LARGE", { maxBytes: 100 });
    const zeros = new Uint8Array(4096 * 32 * 32); // 4 MiB of zeros deflates ~1000:1
    const bomb = zipBytes([
      { name: "images.npy", data: npyBytes("|u1", [4096, 32, 32], zeros), method: "deflate" },
      { name: "labels.npy", data: npy("<i8", [4096], new Array(4096).fill(0)), method: "deflate" },
    ]);
    assert.ok(bomb.length < 64 * 1024);
    const error = await ingestFails("NPZ", { archive: bomb }, "TOO_LARGE");
    assert.match(error.message, /expand/);
    // the same archive is fine when the caller allows the ratio (and the labels are valid)
    const labels = Array.from({ length: 4096 }, (_, i) => i % 2);
    const allowed = await ingestBytes(
      "NPZ",
      {
        archive: zipBytes([
          { name: "images.npy", data: npyBytes("|u1", [4096, 32, 32], zeros), method: "deflate" },
          { name: "labels.npy", data: npy("<i8", [4096], labels), method: "deflate" },
        ]),
      },
      { maxCompressionRatio: 5000 },
    );
    assert.equal(allowed.manifest.count, 4096);
  });

  it("CORRUPT: a CRC mismatch, bad deflate data, and a member longer than declared", async () => {
    const [images, labels] = good() as [{ name: string; data: Buffer }, { name: string; data: Buffer }];
    await ingestFails("NPZ", { archive: zipBytes([{ ...images, crc: 12345 }, labels]) }, "CORRUPT");
    await ingestFails(
      "NPZ",
      { archive: zipBytes([{ ...images, method: "deflate", crc: 1 }, labels]) },
      "CORRUPT",
    );
    const archive = zipBytes([{ ...images, method: "deflate" }, labels]);
    archive[30 + "images.npy".length] = 0xff; // first deflate block: reserved block type
    await ingestFails("NPZ", { archive }, "CORRUPT");
    const longer = Buffer.concat([images.data, Buffer.alloc(100, 7)]);
    await ingestFails(
      "NPZ",
      {
        archive: zipBytes([
          { name: "images.npy", data: longer, method: "deflate", declaredSize: images.data.length },
          labels,
        ]),
      },
      "CORRUPT",
    );
  });

  it("BAD_ARCHIVE: not a zip, cut short, duplicate members, unsupported compression", async () => {
    const notZip = await ingestFails("NPZ", { archive: imagesNpy(3, 1) }, "BAD_ARCHIVE");
    assert.match(notZip.message, /NPY_PAIR/);
    const archive = zipBytes(good());
    await ingestFails("NPZ", { archive: archive.subarray(0, archive.length - 30) }, "BAD_ARCHIVE");
    await ingestFails(
      "NPZ",
      { archive: zipBytes([...good(), good()[0] as { name: string; data: Buffer }]) },
      "BAD_ARCHIVE",
    );
    const [images, labels] = good() as [{ name: string; data: Buffer }, { name: string; data: Buffer }];
    await ingestFails("NPZ", { archive: zipBytes([{ ...images, methodCode: 12 }, labels]) }, "BAD_ARCHIVE");
  });

  it("members are checked like NPY files: truncated, trailing, pickled", async () => {
    const labels = { name: "labels.npy", data: npy("<i8", [3], [0, 1, 0]) };
    const cut = imagesNpy(3, 1);
    await ingestFails(
      "NPZ",
      { archive: zipBytes([{ name: "images.npy", data: cut.subarray(0, cut.length - 5) }, labels]) },
      "TRUNCATED",
    );
    await ingestFails(
      "NPZ",
      {
        archive: zipBytes([
          { name: "images.npy", data: Buffer.concat([cut, Buffer.from([1])]), method: "deflate" },
          labels,
        ]),
      },
      "TRAILING_DATA",
    );
    const pickled = npyBytes("|O", [3], Buffer.from([0x80, 0x04, 0x95, 0x2e]));
    await ingestFails(
      "NPZ",
      { archive: zipBytes([{ name: "images.npy", data: pickled }, labels]) },
      "PICKLE_NOT_ALLOWED",
    );
  });
});
