import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readManifest } from "../../src/datasets/canonical.ts";
import { CanonicalWriter } from "../../src/datasets/canonical-writer.ts";
import { pattern, rejectsWith, runPython, scratch } from "./helpers.ts";

describe("readManifest", () => {
  const shape = { count: 5, height: 3, width: 2, channels: 3 };
  const pixels = pattern(5 * 3 * 2 * 3, 42);

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
});
