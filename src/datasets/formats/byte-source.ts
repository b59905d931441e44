/**
 * Byte sources: bounded sequential reads from a file, a stream or another source, the one way
 * the array formats (NPY_PAIR, NPZ, IDX) take in bytes.
 */

import type { FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import { IngestError } from "../ingest-error.ts";

/** Sequential reads with a caller-owned buffer, so steady-state streaming allocates nothing. */
export interface ByteSource {
  /** Fills target[offset, offset + length); returns fewer bytes only at the end of the data. */
  read(target: Uint8Array, offset: number, length: number): Promise<number>;
  /** Releases the file or stream; safe to call more than once. */
  close(): Promise<void>;
}

/** Reads `file` from `position` up to `end` (default: its end); closes the file on close(). */
export function fileSource(file: FileHandle, position: number, end = Number.POSITIVE_INFINITY): ByteSource {
  let pos = position;
  let closed = false;
  return {
    async read(target, offset, length) {
      let n = 0;
      const want = Math.max(0, Math.min(length, end - pos));
      while (n < want) {
        const { bytesRead } = await file.read(target, offset + n, want - n, pos);
        if (bytesRead === 0) break;
        n += bytesRead;
        pos += bytesRead;
      }
      return n;
    },
    async close() {
      if (closed) return;
      closed = true;
      await file.close();
    },
  };
}

/** Reads a Readable through its async iterator; close() destroys the stream. */
export function streamSource(stream: Readable, mapError: (error: unknown) => Error): ByteSource {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let pending: Buffer | null = null;
  let ended = false;
  let closed = false;
  return {
    async read(target, offset, length) {
      let n = 0;
      while (n < length) {
        if (pending === null || pending.length === 0) {
          if (ended || closed) break;
          let next: IteratorResult<Buffer>;
          try {
            next = await iterator.next();
          } catch (e) {
            throw e instanceof IngestError ? e : mapError(e);
          }
          if (next.done) {
            ended = true;
            break;
          }
          pending = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
          continue;
        }
        const k = Math.min(pending.length, length - n);
        pending.copy(target, offset + n, 0, k);
        pending = pending.subarray(k);
        n += k;
      }
      return n;
    },
    async close() {
      if (closed) return;
      closed = true;
      pending = null;
      if (!ended) await iterator.return?.().catch(() => undefined);
      stream.destroy();
    },
  };
}

/**
 * Wraps a source to see every byte read (`onData`, e.g. a CRC) and to run `onEnd` once when
 * the data is exhausted (which may throw, e.g. on a CRC mismatch).
 */
export function observedSource(
  source: ByteSource,
  hooks: { onData: (bytes: Uint8Array) => void; onEnd: () => void },
): ByteSource {
  let ended = false;
  return {
    async read(target, offset, length) {
      const n = await source.read(target, offset, length);
      if (n > 0) hooks.onData(target.subarray(offset, offset + n));
      if (n < length && !ended) {
        ended = true;
        hooks.onEnd();
      }
      return n;
    },
    close: () => source.close(),
  };
}

/** Reads exactly `length` bytes or fails with TRUNCATED. */
export async function readExactly(
  source: ByteSource,
  length: number,
  what: string,
  part: string,
): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const n = await source.read(buffer, 0, length);
  if (n < length) {
    throw new IngestError("TRUNCATED", `${what}: the file ends inside its ${part} (${n} of ${length} bytes)`);
  }
  return buffer;
}
