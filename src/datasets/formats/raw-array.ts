/**
 * Arrays as the "arrays" formats (NPY_PAIR, NPZ, IDX) hand them to ingest: an element type
 * (`Dtype`), a decoded header and its data still unread (`RawArray`), read in bounded chunks
 * (`readChunks`), and the images/labels pair a reader opens (`OpenedDataset`).
 */

import { IngestError } from "../ingest-error.ts";
import type { ByteSource } from "./byte-source.ts";

export interface Dtype {
  /** unsigned, signed, float, bool */
  kind: "u" | "i" | "f" | "b";
  /** bytes per element */
  size: number;
  littleEndian: boolean;
  /** for messages, e.g. "uint8", ">f4" */
  name: string;
}

const DTYPE_NAMES: Record<string, string> = {
  u1: "uint8",
  i1: "int8",
  b1: "bool",
  u2: "uint16",
  i2: "int16",
  u4: "uint32",
  i4: "int32",
  u8: "uint64",
  i8: "int64",
  f2: "float16",
  f4: "float32",
  f8: "float64",
};

export function makeDtype(kind: Dtype["kind"], size: number, littleEndian: boolean): Dtype {
  const base = DTYPE_NAMES[`${kind}${size}`] ?? `${kind}${size}`;
  const name = size === 1 ? base : `${littleEndian ? "little" : "big"}-endian ${base}`;
  return { kind, size, littleEndian, name };
}

/** A decoded array header and its data, not yet read: `source` is positioned at the first data byte. */
export interface RawArray {
  /** what the array is, for messages: e.g. "images (train.npy)" */
  what: string;
  dtype: Dtype;
  shape: number[];
  /** product(shape) * dtype.size */
  dataBytes: number;
  source: ByteSource;
}

export function shapeText(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}

/** product(shape) * itemSize, or TOO_LARGE when that is not a safe integer. */
export function arrayBytes(shape: readonly number[], itemSize: number, what: string): number {
  let total = itemSize;
  for (const dim of shape) total *= dim;
  if (!Number.isSafeInteger(total)) {
    throw new IngestError("TOO_LARGE", `${what}: shape ${shapeText(shape)} is too large`);
  }
  return total;
}

/**
 * Yields the array's data in chunks whose lengths are multiples of `unit` bytes (at most
 * max(unit, maxChunk) bytes each). The yielded buffer is reused: consume it before asking for
 * the next. Fails with TRUNCATED when the data stops early and TRAILING_DATA when more follows.
 */
export async function* readChunks(array: RawArray, unit: number, maxChunk: number): AsyncGenerator<Buffer> {
  const perChunk = Math.max(unit, Math.floor(maxChunk / unit) * unit);
  const buffer = Buffer.alloc(Math.min(perChunk, Math.max(array.dataBytes, 1)));
  let done = 0;
  while (done < array.dataBytes) {
    const want = Math.min(buffer.length, array.dataBytes - done);
    const n = await array.source.read(buffer, 0, want);
    if (n < want) {
      throw new IngestError(
        "TRUNCATED",
        `${array.what}: the header promises ${array.dataBytes} bytes of data (shape ${shapeText(array.shape)}, ${array.dtype.name}) but the file holds only ${done + n}; the upload is incomplete`,
      );
    }
    done += n;
    yield buffer.subarray(0, n);
  }
  const probe = Buffer.alloc(1);
  if ((await array.source.read(probe, 0, 1)) > 0) {
    throw new IngestError(
      "TRAILING_DATA",
      `${array.what}: more bytes follow the ${array.dataBytes} bytes of data the header promises (shape ${shapeText(array.shape)}, ${array.dtype.name}); the file is not a single array`,
    );
  }
}

export interface OpenedDataset {
  images: RawArray;
  labels: RawArray;
  /** Releases every file and stream; safe after a partial read or an error. */
  close(): Promise<void>;
}

/** Opens several arrays; if one fails, closes those already open. */
export async function openAll(openers: Array<() => Promise<RawArray>>): Promise<RawArray[]> {
  const opened: RawArray[] = [];
  try {
    for (const opener of openers) opened.push(await opener());
    return opened;
  } catch (e) {
    await Promise.all(opened.map((a) => a.source.close().catch(() => undefined)));
    throw e;
  }
}

export function datasetOf(images: RawArray, labels: RawArray, onClose?: () => Promise<void>): OpenedDataset {
  return {
    images,
    labels,
    async close() {
      await Promise.all([images.source.close(), labels.source.close()]);
      await onClose?.();
    },
  };
}
