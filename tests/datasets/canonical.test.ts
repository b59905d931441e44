import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CanonicalWriter, npyHeader, readManifest } from "../../src/datasets/canonical.ts";
import { IngestError } from "../../src/datasets/ingest-error.ts";
import {
  assertCanonical,
  listing,
  loadInTrainer,
  pattern,
  rejectsWith,
  runPython,
  scratch,
} from "./helpers.ts";

describe("npyHeader", () => {
  it("is byte for byte the header numpy writes", () => {
    const cases: Array<[string, number[]]> = [
      ["|u1", [60000, 28, 28, 1]],
      ["<i8", [60000]],
      ["|u1", [1, 1, 1, 3]],
      ["<i8", [0]],
      ["<f4", [123456789, 2]],
      ["|u1", []],
    ];
    const code = [
      "import io, json, sys, numpy as np",
      "from numpy.lib import format as fmt",
      "out = []",
      "for descr, shape in json.loads(sys.argv[1]):",
      "    b = io.BytesIO()",
      "    fmt.write_array_header_1_0(b, {'descr': descr, 'fortran_order': False, 'shape': tuple(shape)})",
      "    out.append(b.getvalue().hex())",
      "print(json.dumps(out))",
    ].join("\n");
    const expected = JSON.parse(runPython(code, JSON.stringify(cases))) as string[];
    cases.forEach(([descr, shape], i) => {
      const header = npyHeader(descr, shape);
      assert.equal(header.toString("hex"), expected[i], `${descr} ${shape}`);
      assert.equal(header.length % 64, 0);
    });
  });
});

describe("CanonicalWriter", () => {
  const shape = { count: 5, height: 3, width: 2, channels: 3 };
  const pixels = pattern(5 * 3 * 2 * 3, 42);

  it("streams chunks that split images anywhere, labels as numbers or BigInt64Array", async () => {
    const out = join(scratch(), "nested", "out");
    const writer = await CanonicalWriter.open(out, shape, { classNames: ["a", "b", "c"] });
    assert.notEqual(writer.tempDir, out);
    await writer.appendLabels([2, 0]);
    await writer.appendLabels(BigInt64Array.from([1n, 2n, 2n]));
    for (const [start, end] of [
      [0, 7],
      [7, 7],
      [7, 50],
      [50, 90],
    ]) {
      await writer.appendImages(pixels.subarray(start, end));
    }
    const manifest = await writer.finish({ sourceFormat: "NPY_PAIR" });
    assertCanonical(out, [5, 3, 2, 3], pixels, [2, 0, 1, 2, 2]);
    assert.deepEqual(manifest.classHistogram, [1, 1, 3]);
    assert.deepEqual(manifest.classNames, ["a", "b", "c"]);
    assert.deepEqual(listing(join(out, "..")), ["out"], "the temporary directory is gone");
    const stored = await readManifest(out, { verify: true });
    assert.deepEqual(stored, manifest);
    assert.equal(loadInTrainer(out), "(5, 3, 2, 3) 7");
  });

  it("readManifest({verify}) catches a changed byte; bad manifests are BAD_MANIFEST", async () => {
    const out = join(scratch(), "out");
    const writer = await CanonicalWriter.open(out, shape);
    await writer.appendLabels([0, 1, 0, 1, 1]);
    await writer.appendImages(pixels);
    await writer.finish({ sourceFormat: "IDX" });
    const images = readFileSync(join(out, "images.npy"));
    images.writeUInt8(images.readUInt8(images.length - 1) ^ 1, images.length - 1);
    writeFileSync(join(out, "images.npy"), images);
    await readManifest(out); // not verified: fine
    await rejectsWith(readManifest(out, { verify: true }), "CORRUPT");
    const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    for (const broken of [
      "not json",
      JSON.stringify({ ...manifest, count: -1 }),
      JSON.stringify({ ...manifest, classNames: ["x"] }),
      JSON.stringify({ ...manifest, sha256: { "../etc/passwd": "0".repeat(64) } }),
      JSON.stringify({ ...manifest, classHistogram: [1] }),
    ]) {
      writeFileSync(join(out, "manifest.json"), broken);
      await rejectsWith(readManifest(out), "BAD_MANIFEST");
    }
    await rejectsWith(readManifest(scratch()), "BAD_MANIFEST");
  });

  it("reads manifests the trainer's own write_canonical produced", async () => {
    const dir = join(scratch(), "py");
    runPython(
      [
        "import sys, numpy as np; sys.path.insert(0, 'trainer')",
        "from trapdoor_trainer.data import write_canonical",
        "write_canonical(sys.argv[1], np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 1, 0]), num_classes=2, extra={'poison': {'attack': 'x'}})",
      ].join("\n"),
      dir,
    );
    const manifest = await readManifest(dir, { verify: true });
    assert.equal(manifest.count, 4);
    assert.deepEqual(manifest.classNames, ["0", "1"]);
    assert.deepEqual(manifest.poison, { attack: "x" });
  });

  it("abort(), or a failing finish(), leaves nothing; overfull appends are refused", async () => {
    const parent = join(scratch(), "p");
    mkdirSync(parent);
    const out = join(parent, "out");
    const aborted = await CanonicalWriter.open(out, shape);
    await aborted.appendImages(pixels.subarray(0, 10));
    await aborted.abort();
    await aborted.abort();
    assert.deepEqual(listing(parent), []);

    const short = await CanonicalWriter.open(out, shape);
    await short.appendLabels([0, 1, 0, 1, 0]);
    await short.appendImages(pixels.subarray(1));
    await rejectsWith(short.finish({ sourceFormat: "NPZ" }), "COUNT_MISMATCH");
    assert.deepEqual(listing(parent), []);

    for (const misuse of [
      (w: CanonicalWriter) => w.appendImages(new Uint8Array(pixels.length + 1)),
      (w: CanonicalWriter) => w.appendLabels([0, 1, 0, 1, 0, 1]),
    ]) {
      const writer = await CanonicalWriter.open(out, shape);
      await rejectsWith(misuse(writer), "COUNT_MISMATCH");
      assert.deepEqual(listing(parent), [], "a failed append discards the dataset");
      await assert.rejects(writer.appendImages(pixels), /aborted/);
    }
    for (const bad of [[0, -1], [0.5], [0, 5]]) {
      const writer = await CanonicalWriter.open(out, shape);
      await rejectsWith(writer.appendLabels(bad), bad[1] === 5 ? "TOO_MANY_CLASSES" : "LABEL_OUT_OF_RANGE");
      assert.deepEqual(listing(parent), []);
    }
  });

  it("refuses an existing output directory and leaves it alone; bad shapes are typed errors", async () => {
    const out = scratch();
    writeFileSync(join(out, "keep.txt"), "x");
    await assert.rejects(
      CanonicalWriter.open(out, shape),
      (e: Error) => !(e instanceof IngestError) && /exists/.test(e.message),
    );
    assert.deepEqual(listing(out), ["keep.txt"]);
    const target = join(scratch(), "out");
    await rejectsWith(CanonicalWriter.open(target, { ...shape, channels: 4 }), "BAD_SHAPE");
    await rejectsWith(CanonicalWriter.open(target, { ...shape, count: 0 }), "EMPTY");
    await rejectsWith(CanonicalWriter.open(target, shape, { numClasses: 6 }), "TOO_MANY_CLASSES");
  });
});
