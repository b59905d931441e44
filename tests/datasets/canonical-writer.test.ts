import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readManifest } from "../../src/datasets/canonical.ts";
import { CanonicalWriter } from "../../src/datasets/canonical-writer.ts";
import { IngestError } from "../../src/datasets/ingest-error.ts";
import { assertCanonical, listing, loadInTrainer, pattern, rejectsWith, scratch } from "./helpers.ts";

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
