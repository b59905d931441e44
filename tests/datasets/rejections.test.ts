import assert from "node:assert/strict";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { FORMAT_PARTS, IngestError, ingest, MAX_IMAGE_BYTES } from "../../src/datasets/ingest.ts";
import {
  ingestBytes,
  ingestFails,
  listing,
  npy,
  npyBytes,
  npyHeaderBytes,
  pattern,
  rejectsWith,
  scratch,
  type ZipMember,
  zipBytes,
} from "./helpers.ts";

const images = (n: number) => npyBytes("|u1", [n, 3, 3], pattern(n * 9, n));
const labels = (values: number[], descr = "<i8") => npy(descr, [values.length], values);
const pair = (n = 4, values = [0, 1, 2, 1]) => ({ images: images(n), labels: labels(values) });

describe("NPY_PAIR rejections: a typed IngestError, and nothing left on disk", () => {
  it("PICKLE_NOT_ALLOWED: object arrays, structured dtypes with an object field, pickle files", async () => {
    const objects = npyBytes("|O", [4], Buffer.from([0x80, 0x04, 0x95, 0x2e]));
    const error = await ingestFails(
      "NPY_PAIR",
      { images: objects, labels: labels([0, 1, 2, 1]) },
      "PICKLE_NOT_ALLOWED",
    );
    assert.match(error.message, /pickle/);
    await ingestFails(
      "NPY_PAIR",
      { images: images(4), labels: npyBytes("|O8", [4], Buffer.alloc(4)) },
      "PICKLE_NOT_ALLOWED",
    );
    const structured = npyBytes("", [], Buffer.alloc(8), {
      dict: "{'descr': [('pixels', '|u1', (3,)), ('Obj', '|O')], 'fortran_order': False, 'shape': (4,), }",
    });
    await ingestFails("NPY_PAIR", { images: structured, labels: labels([0, 1, 2, 1]) }, "PICKLE_NOT_ALLOWED");
    const pickle = Buffer.from([0x80, 0x04, 0x95, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x5d, 0x94, 0x2e]);
    await ingestFails("NPY_PAIR", { images: images(4), labels: pickle }, "PICKLE_NOT_ALLOWED");
  });

  it("BAD_HEADER: not NPY, malformed or incomplete header dicts, unknown version", async () => {
    const notNpy = await ingestFails(
      "NPY_PAIR",
      { images: Buffer.from("just some text here"), labels: labels([0, 1]) },
      "BAD_HEADER",
    );
    assert.match(notNpy.message, /not an NPY file/);
    const zipped = await ingestFails(
      "NPY_PAIR",
      { images: Buffer.from("PK\x03\x04rest of a zip"), labels: labels([0, 1]) },
      "BAD_HEADER",
    );
    assert.match(zipped.message, /NPZ/);
    for (const dict of [
      "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 3), ", // unterminated
      "{'descr': '|u1', 'shape': (2, 3, 3), }", // missing key
      "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 3), 'extra': 1, }",
      "{'descr': '|u1', 'fortran_order': False, 'shape': [2, 3, 3], }", // list, not tuple
      "{'descr': '|u1', 'fortran_order': 0, 'shape': (2, 3, 3), }",
      "{'descr': '|u1', 'fortran_order': False, 'shape': (2, -3, 3), }",
      "__import__('os').system('true')",
    ]) {
      await ingestFails(
        "NPY_PAIR",
        { images: npyBytes("|u1", [], Buffer.alloc(18), { dict }), labels: labels([0, 1]) },
        "BAD_HEADER",
      );
    }
    const v9 = Buffer.from(images(2));
    v9[6] = 9;
    await ingestFails("NPY_PAIR", { images: v9, labels: labels([0, 1]) }, "BAD_HEADER");
  });

  it("TRUNCATED and TRAILING_DATA: the data does not match the header", async () => {
    const full = images(4);
    await ingestFails(
      "NPY_PAIR",
      { images: full.subarray(0, full.length - 1), labels: labels([0, 1, 2, 1]) },
      "TRUNCATED",
    );
    await ingestFails(
      "NPY_PAIR",
      { images: full.subarray(0, 40), labels: labels([0, 1, 2, 1]) },
      "TRUNCATED",
    );
    await ingestFails(
      "NPY_PAIR",
      { images: full, labels: labels([0, 1, 2, 1]).subarray(0, 130) },
      "TRUNCATED",
    );
    const longer = Buffer.concat([full, Buffer.from("garbage")]);
    await ingestFails("NPY_PAIR", { images: longer, labels: labels([0, 1, 2, 1]) }, "TRAILING_DATA");
  });

  it("COUNT_MISMATCH: images and labels differ in number", async () => {
    const error = await ingestFails(
      "NPY_PAIR",
      { images: images(5), labels: labels([0, 1, 2, 1]) },
      "COUNT_MISMATCH",
    );
    assert.match(error.message, /5 images but .* 4 labels/);
  });

  it("UNSUPPORTED_DTYPE: integer/half/complex images, float/bool labels", async () => {
    for (const descr of ["<i2", "<u2", "<f2", "<c8", "|b1", "<U4"]) {
      const bad = npyBytes(descr, [4, 3, 3], Buffer.alloc(36 * (Number(descr.slice(2)) || 1)));
      await ingestFails("NPY_PAIR", { images: bad, labels: labels([0, 1, 2, 1]) }, "UNSUPPORTED_DTYPE");
    }
    await ingestFails(
      "NPY_PAIR",
      { images: images(4), labels: npy("<f4", [4], [0, 1, 2, 1]) },
      "UNSUPPORTED_DTYPE",
    );
    await ingestFails(
      "NPY_PAIR",
      { images: images(4), labels: npyBytes("|b1", [4], Buffer.from([0, 1, 1, 0])) },
      "UNSUPPORTED_DTYPE",
    );
  });

  it("UNSUPPORTED_LAYOUT: Fortran-ordered image arrays", async () => {
    const fortran = npyBytes("|u1", [4, 3, 3], pattern(36), { fortranOrder: true });
    const error = await ingestFails(
      "NPY_PAIR",
      { images: fortran, labels: labels([0, 1, 2, 1]) },
      "UNSUPPORTED_LAYOUT",
    );
    assert.match(error.message, /ascontiguousarray/);
  });

  it("BAD_SHAPE: 4 channels, 2-D or 5-D images, one-hot or 0-d labels", async () => {
    for (const shape of [
      [4, 5, 5, 4],
      [4, 4, 3, 5],
      [4, 9],
      [4, 1, 3, 3, 1],
      [4, 0, 3],
    ]) {
      const count = shape.reduce((a, b) => a * b, 1);
      await ingestFails(
        "NPY_PAIR",
        { images: npyBytes("|u1", shape, Buffer.alloc(count)), labels: labels([0, 1, 2, 1]) },
        "BAD_SHAPE",
      );
    }
    const oneHot = await ingestFails(
      "NPY_PAIR",
      { images: images(4), labels: npy("|u1", [4, 3], new Array(12).fill(0)) },
      "BAD_SHAPE",
    );
    assert.match(oneHot.message, /argmax/);
    await ingestFails("NPY_PAIR", { images: images(4), labels: npy("<i8", [], [0]) }, "BAD_SHAPE");
  });

  it("EMPTY: no images, or an empty file", async () => {
    await ingestFails(
      "NPY_PAIR",
      { images: npyBytes("|u1", [0, 3, 3], Buffer.alloc(0)), labels: labels([]) },
      "EMPTY",
    );
    await ingestFails("NPY_PAIR", { images: Buffer.alloc(0), labels: labels([0, 1]) }, "EMPTY");
  });

  it("LABEL_OUT_OF_RANGE: negative labels, labels at or above numClasses", async () => {
    await ingestFails("NPY_PAIR", pair(4, [0, 1, -1, 1]), "LABEL_OUT_OF_RANGE");
    await ingestFails(
      "NPY_PAIR",
      { images: images(4), labels: labels([0, 1, -3, 1], "|i1") },
      "LABEL_OUT_OF_RANGE",
    );
    await ingestFails(
      "NPY_PAIR",
      { images: images(4), labels: labels([0, -1, 2, 1], ">i8") },
      "LABEL_OUT_OF_RANGE",
    );
    const over = await ingestFails("NPY_PAIR", pair(4, [0, 1, 3, 1]), "LABEL_OUT_OF_RANGE", {
      numClasses: 3,
    });
    assert.match(over.message, /\[0, 3\)/);
    await ingestFails("NPY_PAIR", pair(4, [0, 1, 2, 1]), "LABEL_OUT_OF_RANGE", { classNames: ["a", "b"] });
    // the out-of-range label in the last chunk of a long label array, after writing began
    const n = 100_000;
    const many = Array.from({ length: n }, (_, i) => (i === n - 1 ? 7 : i % 5));
    await ingestFails(
      "NPY_PAIR",
      { images: npyBytes("|u1", [n, 1, 1], Buffer.alloc(n)), labels: labels(many, "<u4") },
      "LABEL_OUT_OF_RANGE",
      { numClasses: 5 },
    );
  });

  it("TOO_MANY_CLASSES: more classes than images", async () => {
    await ingestFails("NPY_PAIR", pair(), "TOO_MANY_CLASSES", { numClasses: 5 });
    const implied = await ingestFails("NPY_PAIR", pair(4, [0, 1, 9, 1]), "TOO_MANY_CLASSES");
    assert.match(implied.message, /at least 10 classes/);
    const huge = npyBytes(
      ">u8",
      [4],
      Buffer.from("00000000000000008000000000000000ffffffffffffffff0000000000000001", "hex"),
    );
    await ingestFails("NPY_PAIR", { images: images(4), labels: huge }, "TOO_MANY_CLASSES");
  });

  it("BAD_NUM_CLASSES and BAD_CLASS_NAMES", async () => {
    const single = await ingestFails("NPY_PAIR", pair(4, [0, 0, 0, 0]), "BAD_NUM_CLASSES");
    assert.match(single.message, /numClasses/);
    await ingestFails("NPY_PAIR", pair(), "BAD_NUM_CLASSES", { numClasses: 1 });
    await ingestFails("NPY_PAIR", pair(), "BAD_NUM_CLASSES", { numClasses: 2.5 });
    await ingestFails("NPY_PAIR", pair(), "BAD_CLASS_NAMES", { numClasses: 3, classNames: ["a", "b"] });
    await ingestFails("NPY_PAIR", pair(), "BAD_CLASS_NAMES", {
      classNames: ["a", 2, "c"] as unknown as string[],
    });
  });

  it("PIXEL_OUT_OF_RANGE: float values outside [0, 1], NaN, even in the last image of a long array", async () => {
    for (const bad of [1.5, -0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const values = [0, 0.5, 1, bad, 0, 0, 0, 0, 0, 0, 0, 0];
      const error = await ingestFails(
        "NPY_PAIR",
        { images: npy("<f4", [3, 2, 2], values), labels: labels([0, 1, 0]) },
        "PIXEL_OUT_OF_RANGE",
      );
      assert.match(error.message, /image 0/);
    }
    const n = 600; // 600 × 64 × 64 float64 = 19.7 MB: three chunks
    const values = new Float64Array(n * 64 * 64).fill(0.25);
    values[values.length - 1] = 1.0000001;
    const error = await ingestFails(
      "NPY_PAIR",
      {
        images: npyBytes(">f8", [n, 64, 64], Buffer.from(values.buffer).swap64()),
        labels: labels(Array.from({ length: n }, (_, i) => i % 2)),
      },
      "PIXEL_OUT_OF_RANGE",
    );
    assert.match(error.message, /image 599/);
  });

  it("TOO_LARGE: maxBytes, an impossible shape, one huge image", async () => {
    await ingestFails("NPY_PAIR", pair(), "TOO_LARGE", { maxBytes: 50 });
    const impossible = npyBytes("|u1", [2 ** 40, 4096, 4096], Buffer.alloc(0));
    await ingestFails("NPY_PAIR", { images: impossible, labels: labels([0, 1]) }, "TOO_LARGE");
    // one 2100×2100 float64 image (35 MB), as a sparse file
    const root = scratch();
    const path = join(root, "huge.npy");
    const header = npyHeaderBytes("<f8", [2, 2100, 2100]);
    const fd = openSync(path, "w");
    writeSync(fd, header);
    ftruncateSync(fd, header.length + 2 * 2100 * 2100 * 8);
    closeSync(fd);
    writeFileSync(join(root, "labels.npy"), labels([0, 1]));
    const parent = join(root, "result");
    mkdirSync(parent);
    const error = await rejectsWith(
      ingest(
        { format: "NPY_PAIR", parts: { images: path, labels: join(root, "labels.npy") } },
        join(parent, "out"),
      ),
      "TOO_LARGE",
    );
    assert.match(error.message, new RegExp(String(MAX_IMAGE_BYTES)));
    assert.deepEqual(listing(parent), []);
  });
});

describe("ingest input checks", () => {
  it("MISSING_PART, UNKNOWN_PART, UNKNOWN_FORMAT", async () => {
    const root = scratch();
    writeFileSync(join(root, "images.npy"), images(4));
    writeFileSync(join(root, "labels.npy"), labels([0, 1, 2, 1]));
    const out = join(root, "out");
    await rejectsWith(
      ingest({ format: "NPY_PAIR", parts: { images: join(root, "images.npy") } }, out),
      "MISSING_PART",
    );
    await rejectsWith(
      ingest(
        { format: "NPY_PAIR", parts: { images: join(root, "images.npy"), labels: join(root, "nope.npy") } },
        out,
      ),
      "MISSING_PART",
    );
    await rejectsWith(
      ingest({ format: "NPY_PAIR", parts: { images: join(root, "images.npy"), labels: root } }, out),
      "MISSING_PART",
    );
    await rejectsWith(
      ingest(
        {
          format: "NPY_PAIR",
          parts: {
            images: join(root, "images.npy"),
            labels: join(root, "labels.npy"),
            extra: join(root, "labels.npy"),
          },
        },
        out,
      ),
      "UNKNOWN_PART",
    );
    await rejectsWith(ingest({ format: "CSV" as "NPZ", parts: {} }, out), "UNKNOWN_FORMAT");
    await rejectsWith(
      ingest({ format: "NPZ", parts: { images: join(root, "images.npy") } }, out),
      "UNKNOWN_PART",
    );
    assert.deepEqual(listing(root), ["images.npy", "labels.npy"]);
  });

  it("FORMAT_PARTS names each format's parts; IngestError is an Error with a code", () => {
    assert.deepEqual(FORMAT_PARTS, {
      NPY_PAIR: ["images", "labels"],
      NPZ: ["archive"],
      IDX: ["images", "labels"],
      CIFAR10_BINARY: ["archive"],
      CLASS_FOLDERS: ["archive"],
      GTSRB: ["archive"],
    });
    const error = new IngestError("EMPTY", "nothing");
    assert.ok(error instanceof Error);
    assert.equal(error.name, "IngestError");
    assert.equal(error.code, "EMPTY");
  });

  it("no file descriptor outlives an ingest, whichever way it ends", {
    skip: !existsSync("/proc/self/fd") && "needs /proc",
  }, async () => {
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    const member = (name: string, data: Buffer, method: "stored" | "deflate", crc?: number) => ({
      name,
      data,
      method,
      crc,
    });
    for (const method of ["stored", "deflate"] as const) {
      const good = [
        member("images.npy", images(4), method),
        member("labels.npy", labels([0, 1, 2, 1]), method),
      ];
      await ingestBytes("NPZ", { archive: zipBytes(good) });
      const negative = member("labels.npy", labels([0, -1, 2, 1]), method);
      await ingestFails("NPZ", { archive: zipBytes([good[0] as ZipMember, negative]) }, "LABEL_OUT_OF_RANGE");
      const badCrc = member("images.npy", images(4), method, 7);
      await ingestFails("NPZ", { archive: zipBytes([badCrc, good[1] as ZipMember]) }, "CORRUPT");
      const fewer = member("labels.npy", labels([0, 1, 0]), method);
      await ingestFails("NPZ", { archive: zipBytes([good[0] as ZipMember, fewer]) }, "COUNT_MISMATCH");
    }
    const idxImages = gzipSync(Buffer.from([0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2]));
    const idxLabels = Buffer.from([0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 0, 1]);
    await ingestFails("IDX", { images: idxImages, labels: idxLabels }, "TRUNCATED");
    await ingestFails("NPY_PAIR", pair(4, [0, 1, 7, 1]), "LABEL_OUT_OF_RANGE", { numClasses: 3 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(fds(), before);
  });
});
