import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ingest } from "../../src/datasets/ingest.ts";
import { encode, npyHeaderBytes, pattern, scratch } from "./helpers.ts";

/** Writes header + `total` bytes produced `chunk` bytes at a time; returns the file's sha256. */
async function writeStreamed(
  path: string,
  header: Buffer,
  total: number,
  fill: (buffer: Buffer, offset: number) => void,
) {
  const hash = createHash("sha256").update(header);
  const file = await open(path, "w");
  try {
    await file.write(header);
    const buffer = Buffer.alloc(4 << 20);
    for (let offset = 0; offset < total; offset += buffer.length) {
      const piece = buffer.subarray(0, Math.min(buffer.length, total - offset));
      fill(piece, offset);
      hash.update(piece);
      await file.write(piece);
    }
  } finally {
    await file.close();
  }
  return hash.digest("hex");
}

describe("bounded memory", () => {
  it("a ~200 MB NPY pair is ingested with far less extra RSS than its size", async (t) => {
    const root = scratch("trapdoor-memory-");
    try {
      const [n, h, w, c] = [65536, 32, 32, 3]; // 201 MB of pixels
      const imageBytes = n * h * w * c;
      const noise = Buffer.from(pattern(4 << 20, 99));
      const imagesSha = await writeStreamed(
        join(root, "images.npy"),
        npyHeaderBytes("|u1", [n, h, w, c]),
        imageBytes,
        (piece, offset) => {
          noise.copy(piece, 0, 0, piece.length);
          piece.writeUInt32LE(offset >>> 0, 0); // every chunk differs
        },
      );
      const labelsSha = await writeStreamed(
        join(root, "labels.npy"),
        npyHeaderBytes("<i8", [n]),
        n * 8,
        (piece, offset) => {
          const first = offset / 8;
          piece.set(
            encode(
              "<i8",
              Array.from({ length: piece.length / 8 }, (_, i) => (first + i) % 10),
            ),
          );
        },
      );

      const before = process.memoryUsage.rss();
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage.rss());
      }, 2);
      const started = performance.now();
      let manifest: Awaited<ReturnType<typeof ingest>>;
      try {
        manifest = await ingest(
          {
            format: "NPY_PAIR",
            parts: { images: join(root, "images.npy"), labels: join(root, "labels.npy") },
          },
          join(root, "out"),
        );
      } finally {
        clearInterval(sampler);
      }
      const seconds = (performance.now() - started) / 1000;
      peak = Math.max(peak, process.memoryUsage.rss());
      const growthMiB = (peak - before) / 2 ** 20;
      t.diagnostic(
        `input ${(imageBytes / 2 ** 20).toFixed(0)} MiB; peak RSS growth ${growthMiB.toFixed(1)} MiB; ingest ${seconds.toFixed(2)} s (${(imageBytes / 2 ** 20 / seconds).toFixed(0)} MiB/s)`,
      );
      // the canonical files are byte-identical to these inputs, which are already canonical
      assert.equal(manifest.sha256["images.npy"], imagesSha);
      assert.equal(manifest.sha256["labels.npy"], labelsSha);
      assert.deepEqual(
        manifest.classHistogram,
        new Array(10).fill(0).map((_, k) => Math.floor((n - k - 1) / 10) + 1),
      );
      assert.ok(
        growthMiB < 64,
        `peak RSS grew by ${growthMiB.toFixed(1)} MiB while ingesting ${imageBytes} bytes`,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
