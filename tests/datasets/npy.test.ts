import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  assertCanonical,
  encode,
  ingestBytes,
  nchwToNhwc,
  npy,
  npyBytes,
  pattern,
  readNpy,
  runPython,
  scratch,
} from "./helpers.ts";

const range = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

describe("NPY_PAIR ingest: layouts, dtypes, byte orders", () => {
  it("N×H×W uint8 becomes N×H×W×1", async () => {
    const pixels = pattern(5 * 4 * 3, 7);
    const labels = [0, 1, 2, 1, 0];
    const { manifest, out } = await ingestBytes("NPY_PAIR", {
      images: npyBytes("|u1", [5, 4, 3], pixels),
      labels: npy("<i8", [5], labels),
    });
    assertCanonical(out, [5, 4, 3, 1], pixels, labels);
    assert.deepEqual(manifest, {
      count: 5,
      height: 4,
      width: 3,
      channels: 1,
      numClasses: 3,
      classNames: ["0", "1", "2"],
      sha256: manifest.sha256,
      sourceFormat: "NPY_PAIR",
      classHistogram: [2, 2, 1],
    });
  });

  it("N×H×W×3 and N×H×W×1 uint8 are copied as they are", async () => {
    for (const c of [3, 1]) {
      const pixels = pattern(4 * 5 * 6 * c, 11 + c);
      const labels = [1, 0, 1, 0];
      const { out } = await ingestBytes("NPY_PAIR", {
        images: npyBytes("|u1", [4, 5, 6, c], pixels),
        labels: npy("<i8", [4], labels),
      });
      assertCanonical(out, [4, 5, 6, c], pixels, labels);
    }
  });

  it("N×C×H×W is transposed to N×H×W×C (C = 3 and C = 1)", async () => {
    for (const c of [3, 1]) {
      const [n, h, w] = [3, 4, 5];
      const pixels = pattern(n * c * h * w, 3 + c);
      const labels = [0, 1, 1];
      const { out, manifest } = await ingestBytes("NPY_PAIR", {
        images: npyBytes("|u1", [n, c, h, w], pixels),
        labels: npy("|u1", [n], labels),
      });
      assert.deepEqual([manifest.height, manifest.width, manifest.channels], [h, w, c]);
      assertCanonical(out, [n, h, w, c], nchwToNhwc(pixels, n, c, h, w), labels);
    }
  });

  it("the last dimension decides first: N×3×8×3 is channels-last (H = 3, W = 8)", async () => {
    const pixels = pattern(2 * 3 * 8 * 3, 5);
    const { out } = await ingestBytes("NPY_PAIR", {
      images: npyBytes("|u1", [2, 3, 8, 3], pixels),
      labels: npy("<i8", [2], [0, 1]),
    });
    assertCanonical(out, [2, 3, 8, 3], pixels, [0, 1]);
  });

  it("float32 (little-endian) in [0, 1] is converted by round(x * 255)", async () => {
    const values = [0, 1, 0.5, 0.2, 1 / 255, 254.5 / 255, 0.999, 0.0019, 1e-9, 0.75, 0.33, 0.66];
    const expected = values.map((v) => Math.round(Math.fround(v) * 255));
    assert.equal(expected[2], 128);
    const { out } = await ingestBytes("NPY_PAIR", {
      images: npy("<f4", [3, 2, 2], values),
      labels: npy("<i8", [3], [0, 1, 0]),
    });
    assertCanonical(out, [3, 2, 2, 1], expected, [0, 1, 0]);
  });

  it("float64 big-endian N×C×H×W is converted and transposed", async () => {
    const [n, c, h, w] = [2, 3, 3, 4];
    const codes = pattern(n * c * h * w, 9);
    const values = Array.from(codes, (v) => v / 255);
    const { out } = await ingestBytes("NPY_PAIR", {
      images: npy(">f8", [n, c, h, w], values),
      labels: npy(">i8", [n], [1, 0]),
    });
    assertCanonical(out, [n, h, w, c], nchwToNhwc(codes, n, c, h, w), [1, 0]);
  });

  it("labels of every integer dtype, in either byte order", async () => {
    const pixels = pattern(4 * 2 * 2, 1);
    const labels = [3, 0, 2, 1];
    for (const descr of [
      "|u1",
      "|i1",
      "<u2",
      ">u2",
      "<i2",
      ">i2",
      "<u4",
      ">u4",
      "<i4",
      ">i4",
      "<u8",
      ">u8",
      "<i8",
      ">i8",
    ]) {
      const { out, manifest } = await ingestBytes("NPY_PAIR", {
        images: npyBytes("|u1", [4, 2, 2], pixels),
        labels: npy(descr, [4], labels),
      });
      assertCanonical(out, [4, 2, 2, 1], pixels, labels);
      assert.equal(manifest.numClasses, 4, descr);
    }
  });

  it("labels shaped (N, 1), NPY v2.0 headers, Python 2 'L' integers and 1-D Fortran order are read", async () => {
    const pixels = pattern(3 * 2 * 2 * 3, 2);
    const { out } = await ingestBytes("NPY_PAIR", {
      images: npyBytes("|u1", [3, 2, 2, 3], pixels, { version: 2, longs: true }),
      labels: npy("<i4", [3, 1], [1, 0, 1], { fortranOrder: true }),
    });
    assertCanonical(out, [3, 2, 2, 3], pixels, [1, 0, 1]);
  });

  it("numClasses and classNames are kept; absent classes count 0 in the histogram", async () => {
    const pixels = pattern(6 * 2 * 2, 4);
    const { manifest } = await ingestBytes(
      "NPY_PAIR",
      { images: npyBytes("|u1", [6, 2, 2], pixels), labels: npy("<i8", [6], [0, 0, 2, 2, 2, 0]) },
      { numClasses: 5 },
    );
    assert.equal(manifest.numClasses, 5);
    assert.deepEqual(manifest.classNames, ["0", "1", "2", "3", "4"]);
    assert.deepEqual(manifest.classHistogram, [3, 0, 3, 0, 0]);
    const named = await ingestBytes(
      "NPY_PAIR",
      { images: npyBytes("|u1", [6, 2, 2], pixels), labels: npy("<i8", [6], [0, 0, 1, 1, 2, 0]) },
      { classNames: ["cat", "dog", "bird"] },
    );
    assert.equal(named.manifest.numClasses, 3);
    assert.deepEqual(named.manifest.classNames, ["cat", "dog", "bird"]);
  });

  it("arrays larger than one 8 MiB chunk: uint8 N×C×H×W and float32 rows split correctly", async () => {
    const [n, c, h, w] = [700, 3, 64, 64]; // 8.6 MB: two chunks
    const pixels = pattern(n * c * h * w, 21);
    const labels = range(n, (i) => i % 10);
    const big = await ingestBytes("NPY_PAIR", {
      images: npyBytes("|u1", [n, c, h, w], pixels),
      labels: npy("<i2", [n], labels),
    });
    assertCanonical(big.out, [n, h, w, c], nchwToNhwc(pixels, n, c, h, w), labels);

    const m = 2200; // 2200 × 32 × 32 × 1 float32 = 9 MB
    const codes = pattern(m * 32 * 32, 22);
    const floats = await ingestBytes("NPY_PAIR", {
      images: npy(
        "<f4",
        [m, 32, 32, 1],
        Array.from(codes, (v) => v / 255),
      ),
      labels: npy(
        "<i8",
        [m],
        range(m, (i) => i % 2),
      ),
    });
    assertCanonical(
      floats.out,
      [m, 32, 32, 1],
      codes,
      range(m, (i) => i % 2),
    );
  });

  it("files written by numpy itself (np.save) give numpy's own conversion", async () => {
    const dir = scratch();
    runPython(
      [
        "import sys, numpy as np",
        "d = sys.argv[1]; rng = np.random.default_rng(0)",
        "codes = rng.integers(0, 256, size=(7, 3, 5, 6)).astype(np.uint8)",
        "np.save(d + '/nchw.npy', codes)",
        "np.save(d + '/floats.npy', (codes / 255).astype('>f4'))",
        "np.save(d + '/labels.npy', np.array([[4], [0], [1], [2], [3], [0], [1]], dtype='>i2'))",
        "np.save(d + '/expected.npy', np.ascontiguousarray(codes.transpose(0, 2, 3, 1)))",
      ].join("\n"),
      dir,
    );
    const expected = readNpy(join(dir, "expected.npy")).data;
    assert.equal(expected.length, 7 * 5 * 6 * 3);
    for (const file of ["nchw.npy", "floats.npy"]) {
      const { out } = await ingestBytes("NPY_PAIR", {
        images: readFileSync(join(dir, file)),
        labels: readFileSync(join(dir, "labels.npy")),
      });
      assertCanonical(out, [7, 5, 6, 3], expected, [4, 0, 1, 2, 3, 0, 1]);
    }
  });

  it("the helper's encodings are what numpy reads (guards the fixtures themselves)", () => {
    const dir = scratch();
    const values = [0, 1, 200, 65535];
    const file = join(dir, "u2.npy");
    writeFileSync(file, npy(">u2", [2, 2], values));
    const printed = runPython(
      "import sys, numpy as np; a = np.load(sys.argv[1]); print(a.dtype.str, a.shape, a.ravel().tolist())",
      file,
    );
    assert.equal(printed.trim(), ">u2 (2, 2) [0, 1, 200, 65535]");
    assert.deepEqual([...encode("<i8", [-2])], [254, 255, 255, 255, 255, 255, 255, 255]);
  });
});
