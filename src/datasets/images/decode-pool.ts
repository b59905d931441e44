/**
 * Image files decoded on a pool of threads (piscina), in order. The main thread only reads the
 * archive and writes the canonical file; decoding, resizing and channel conversion run on
 * DECODE_THREADS threads, a batch of files per task so the message passing stays small next to
 * the work. Results come out in archive order, at most IN_FLIGHT batches are held at once, so
 * memory stays flat in the archive's size.
 */

import { availableParallelism } from "node:os";
import { extname } from "node:path";
import { Piscina } from "piscina";
// sharp must be loaded in the main thread before a worker thread loads it (its own advice).
import "sharp";
import { IngestError } from "../ingest-error.ts";
import { mapOrdered } from "../map-ordered.ts";
import type { DecodeBatch, DecodedBatch } from "./decode-worker.ts";
import type { ImageSteps } from "./pipeline.ts";
import type { RawImage } from "./ppm.ts";

/** One thread per core the process may use (cgroup limits included, on a recent libuv). */
export const DECODE_THREADS = Math.max(1, Math.min(availableParallelism(), 16));
/** Files per task: enough to dwarf a message's cost (~20 µs) next to ~100 µs per 64×64 PNG. */
const BATCH_IMAGES = 32;
const BATCH_BYTES = 4 << 20;
/**
 * Four batches per thread (~130 images each, a few MB): enough queued that no thread waits while
 * the main thread reads the archive or hands a chunk to the disk.
 */
const IN_FLIGHT = DECODE_THREADS * 4;

export interface EncodedImage {
  bytes: Buffer;
  steps: ImageSteps;
}

let pool: Piscina<DecodeBatch, DecodedBatch> | undefined;

function decodingPool(): Piscina<DecodeBatch, DecodedBatch> {
  if (pool) return pool;
  const self = new URL(import.meta.url);
  const worker = new URL(`./decode-worker${extname(self.pathname)}`, self);
  pool = new Piscina<DecodeBatch, DecodedBatch>({
    filename: worker.href,
    // Threads stay once started (an ingest worker keeps ingesting); idle ones do not keep the
    // process alive.
    minThreads: DECODE_THREADS,
    maxThreads: DECODE_THREADS,
    execArgv: loaderArgs(worker),
  });
  return pool;
}

/**
 * Starts the decoding threads and waits until they answer, so the first upload does not pay for
 * their start (a worker serving the ingest queue calls this once).
 */
export async function warmDecodePool(): Promise<void> {
  const pool = decodingPool();
  const empty: DecodeBatch = { bytes: new Uint8Array(0), ends: [], steps: [] };
  await Promise.all(Array.from({ length: DECODE_THREADS }, () => pool.run(empty)));
}

/**
 * The module loaders of this process, for the threads: only those, since a thread refuses
 * process-wide flags (--expose-gc, --max-old-space-size, ...). Sources run through tsx need it
 * in the thread too, even when the process registered it by API (bin/trapdoor.js).
 */
function loaderArgs(worker: URL): string[] {
  const args: string[] = [];
  const given = process.execArgv;
  for (let i = 0; i < given.length; i++) {
    const arg = given[i] as string;
    if (/^--(import|require|loader|experimental-loader)=/.test(arg)) args.push(arg);
    else if (/^--(import|require|loader|experimental-loader)$/.test(arg) && i + 1 < given.length)
      args.push(arg, given[++i] as string);
  }
  if (worker.pathname.endsWith(".ts") && !args.some((a) => a.includes("tsx")))
    args.push("--import", import.meta.resolve("tsx"));
  return args;
}

async function* batches<T extends EncodedImage>(items: AsyncIterable<T>): AsyncGenerator<T[]> {
  let group: T[] = [];
  let bytes = 0;
  for await (const item of items) {
    group.push(item);
    bytes += item.bytes.length;
    if (group.length >= BATCH_IMAGES || bytes >= BATCH_BYTES) {
      yield group;
      group = [];
      bytes = 0;
    }
  }
  if (group.length > 0) yield group;
}

async function runBatch<T extends EncodedImage>(group: T[]): Promise<{ group: T[]; result: DecodedBatch }> {
  const ends: number[] = [];
  let total = 0;
  for (const item of group) {
    total += item.bytes.length;
    ends.push(total);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const item of group) {
    bytes.set(item.bytes, at);
    at += item.bytes.length;
  }
  const task: DecodeBatch = { bytes, ends, steps: group.map((item) => item.steps) };
  const result = await decodingPool().run(task, { transferList: [bytes.buffer as ArrayBuffer] });
  return { group, result };
}

/** Decodes every file, `steps` applied, yielding each item with its image in input order. */
export async function* decodeInOrder<T extends EncodedImage>(
  items: AsyncIterable<T>,
): AsyncGenerator<{ item: T; image: RawImage }> {
  for await (const { group, result } of mapOrdered(batches(items), IN_FLIGHT, runBatch<T>)) {
    const pixels = Buffer.from(result.pixels.buffer, result.pixels.byteOffset, result.pixels.byteLength);
    let at = 0;
    for (let i = 0; i < result.shapes.length; i++) {
      const { width, height, channels } = result.shapes[i] as DecodedBatch["shapes"][number];
      const size = width * height * channels;
      yield { item: group[i] as T, image: { data: pixels.subarray(at, at + size), width, height, channels } };
      at += size;
    }
    const failure = result.failure;
    if (failure) {
      if (failure.code === undefined)
        throw new Error(`decoding ${group[failure.index]?.steps.source}: ${failure.message}`);
      throw new IngestError(failure.code, failure.message, failure.field);
    }
  }
}
