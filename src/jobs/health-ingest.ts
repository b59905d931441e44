/**
 * A finished job's health report, from its trainer's files into the service: the verdict and
 * evidence (health.json), every training sample's score (health_scores.npy) ranked most
 * suspicious first with its label, and a PNG thumbnail for each of the top THUMBNAILS samples,
 * cut from the staged training images. The worker runs this while the job is UPLOADING.
 */
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import sharp from "sharp";
import type { DataSource } from "typeorm";
import { fileSource } from "../datasets/formats/byte-source.ts";
import { type NpyHeader, parseNpyHeader } from "../datasets/formats/npy-header.ts";
import { type RankedSample, saveHealth, type Verdict } from "../db/job-health.ts";
import { keys } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";

export const HEALTH_FILE = "health.json";
export const SCORES_FILE = "health_scores.npy";
/** Samples kept in the queryable ranking; the scores artifact holds every one. */
export const RANKED_LIMIT = 10_000;
export const THUMBNAILS = 200;
/** Thumbnails are enlarged (nearest neighbour, so pixels stay pixels) to at least this side. */
const THUMBNAIL_MIN_SIDE = 64;

interface HealthJson {
  verdict: Verdict;
  likelyTarget: number | null;
  evidence: Record<string, unknown>;
  calibration?: Record<string, unknown> | null;
}

interface NpyFile {
  header: NpyHeader;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

async function openNpy(path: string): Promise<NpyFile> {
  const file = await open(path, "r");
  try {
    const header = await parseNpyHeader(fileSource(file, 0), path);
    return {
      header,
      async read(offset, length) {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await file.read(buffer, 0, length, header.headerBytes + offset);
        if (bytesRead !== length) throw new Error(`${path}: short read at ${offset}`);
        return buffer;
      },
      close: () => file.close(),
    };
  } catch (error) {
    await file.close();
    throw error;
  }
}

function expectDtype(file: NpyFile, kind: string, size: number, what: string): number {
  const { dtype, shape } = file.header;
  if (dtype.kind !== kind || dtype.size !== size || !dtype.littleEndian)
    throw new Error(`${what} is ${dtype.name}, expected ${kind}${size} little-endian`);
  return shape[0] ?? 0;
}

/** Indices by descending score, ties to the lower index (the trainer's `most_suspicious`). */
export function rankByScore(scores: Float32Array): Uint32Array {
  const order = Uint32Array.from({ length: scores.length }, (_, i) => i);
  return order.sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b);
}

export async function thumbnailPng(pixels: Buffer, height: number, width: number, channels: number) {
  const scale = Math.max(1, Math.ceil(THUMBNAIL_MIN_SIDE / Math.max(height, width)));
  const image = sharp(pixels, { raw: { width, height, channels: channels as 1 | 3 } }).resize(
    width * scale,
    height * scale,
    { kernel: "nearest" },
  );
  return (channels === 1 ? image.toColourspace("b-w") : image).png().toBuffer(); // grey stays one channel
}

/**
 * Store the report of `jobId` from `workdir` (the trainer's) and `trainDir` (the canonical
 * training set it read). Nothing happens when the trainer wrote no report.
 */
export async function ingestHealth(
  db: DataSource,
  store: ObjectStore,
  job: { id: string; tenant_id: string },
  workdir: string,
  trainDir: string,
): Promise<boolean> {
  let report: HealthJson;
  try {
    report = JSON.parse(await readFile(join(workdir, HEALTH_FILE), "utf8")) as HealthJson;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
  const scoresFile = await openNpy(join(workdir, SCORES_FILE));
  const labelsFile = await openNpy(join(trainDir, "labels.npy"));
  const imagesFile = await openNpy(join(trainDir, "images.npy"));
  try {
    const n = expectDtype(scoresFile, "f", 4, SCORES_FILE);
    if (expectDtype(labelsFile, "i", 8, "labels.npy") !== n)
      throw new Error(
        `${SCORES_FILE} scores ${n} samples but the training set holds ${labelsFile.header.shape[0]}`,
      );
    const raw = await scoresFile.read(0, n * 4);
    const scores = new Float32Array(raw.buffer, raw.byteOffset, n);
    const labelBytes = await labelsFile.read(0, n * 8);
    const [, height = 0, width = 0, channels = 0] = imagesFile.header.shape;
    const rowBytes = height * width * channels;
    const order = rankByScore(scores).subarray(0, RANKED_LIMIT);
    const ranked: RankedSample[] = [];
    for (const [rank, index] of order.entries()) {
      let thumbnailKey: string | null = null;
      if (rank < THUMBNAILS) {
        const png = await thumbnailPng(
          await imagesFile.read(index * rowBytes, rowBytes),
          height,
          width,
          channels,
        );
        thumbnailKey = keys.healthThumbnail(job.tenant_id, job.id, index);
        await store.putStream(thumbnailKey, Readable.from([png]), {
          contentType: "image/png",
          sizeBytes: png.length,
        });
      }
      const label = Number(labelBytes.readBigInt64LE(index * 8));
      ranked.push({ index, score: scores[index] as number, label, thumbnailKey });
    }
    await saveHealth(
      db,
      {
        job_id: job.id,
        verdict: report.verdict,
        likely_target: report.likelyTarget,
        evidence: report.evidence,
        calibration: report.calibration ?? null,
        sample_count: n,
      },
      ranked,
    );
    return true;
  } finally {
    await Promise.all([scoresFile.close(), labelsFile.close(), imagesFile.close()]);
  }
}
