/**
 * The decoding threads (src/datasets/images/decode-pool.ts): images come back in archive order
 * across many batches, and the threads start in a process run with flags a thread refuses.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { archiveOf, pngBytes } from "./archives.ts";
import { ingestBytes, readNpy } from "./helpers.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** 150 one-colour 3×2 PNGs (five batches of 32), image i's grey level i, in two classes. */
function numberedArchive(): Buffer {
  const files: Array<[string, Uint8Array]> = [];
  for (let i = 0; i < 150; i++) {
    files.push([
      `${i % 2 ? "b" : "a"}/${String(i).padStart(3, "0")}.png`,
      pngBytes(3, 2, 1, new Array(6).fill(i)),
    ]);
  }
  return archiveOf("tar", files);
}

describe("decoding threads", () => {
  it("keep archive order across batches", async () => {
    const { out, manifest } = await ingestBytes("CLASS_FOLDERS", { archive: numberedArchive() });
    assert.equal(manifest.count, 150);
    const pixels = readNpy(join(out, "images.npy")).data;
    const firstOfEach = Array.from({ length: 150 }, (_, i) => pixels[i * 6]);
    assert.deepEqual(
      firstOfEach,
      Array.from({ length: 150 }, (_, i) => i),
    );
  });

  it("start in a process run with flags a thread refuses (--expose-gc)", () => {
    const dir = mkdtempSync(join(tmpdir(), "trapdoor-pool-"));
    const archive = join(dir, "a.tar");
    writeFileSync(archive, numberedArchive());
    const script = `const { ingest } = await import(${JSON.stringify(join(repo, "src/datasets/ingest.ts"))});
      const m = await ingest({ format: "CLASS_FOLDERS", parts: { archive: ${JSON.stringify(archive)} } }, ${JSON.stringify(join(dir, "out"))});
      console.log(m.count);`;
    const run = spawnSync(
      process.execPath,
      ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", script],
      {
        cwd: repo,
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), "150");
  });
});
