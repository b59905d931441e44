/**
 * How the local store puts bytes into files: streamed into a fresh `.part` file while counted and
 * hashed, checked, fsynced, then renamed over the target, so a file appears whole or not at all
 * and a failed write leaves no `.part` behind.
 *
 * Every object write stamps the file's mtime with a fresh stamp from nextStamp(), which also
 * stamps upload URLs (`iat`, local-signing.ts); a signed upload is refused when the object was
 * written at or after its URL was issued: a used upload URL cannot be replayed to overwrite the
 * object; overwriting takes a freshly signed URL. (This needs millisecond file timestamps, as
 * ext4, xfs, btrfs, tmpfs and apfs have.)
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, rename, rm, stat, utimes } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { HashingStream, InvalidKeyError, SizeMismatchError, type StoredObject } from "./object-store.ts";

let lastStamp = 0;
/** Strictly increasing millisecond stamps (per process): URL issue times and write times. */
export function nextStamp(): number {
  lastStamp = Math.max(Date.now(), lastStamp + 1);
  return lastStamp;
}

export function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** Error codes that mean there is no file at the path. */
export const ABSENT = new Set(["ENOENT", "ENOTDIR", "ENAMETOOLONG"]);

export interface WriteOptions {
  sizeBytes?: number;
  /** Refuse (ObjectExistsError) when the key holds an object written at or after this stamp. */
  issuedAt?: number;
}

/** The object was written after the upload URL was issued; a fresh URL is needed to overwrite. */
export class ObjectExistsError extends Error {
  override name = "ObjectExistsError";
}

/**
 * Streams `body` to a temporary file in `tmpDir`, checks it, stamps it and renames it over
 * `target` (the file of `key`, named in errors).
 */
export async function writeObjectFile(
  body: NodeJS.ReadableStream,
  target: string,
  key: string,
  tmpDir: string,
  opts: WriteOptions,
): Promise<StoredObject> {
  if (opts.issuedAt !== undefined) await assertWritable(target, opts.issuedAt);
  const tmp = join(tmpDir, `${randomUUID()}.part`);
  const hasher = new HashingStream(opts.sizeBytes);
  try {
    await pipeIntoNewFile(body, hasher, tmp, 0o644);
    if (opts.sizeBytes !== undefined && hasher.sizeBytes !== opts.sizeBytes) {
      throw new SizeMismatchError(opts.sizeBytes, hasher.sizeBytes);
    }
    await syncFile(tmp);
    const stamp = new Date(nextStamp());
    await utimes(tmp, stamp, stamp);
    if (opts.issuedAt !== undefined) await assertWritable(target, opts.issuedAt);
    await moveInto(tmp, target, key);
    return hasher.result();
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Streams `source` to a temporary file beside `path`, then renames it; size + SHA-256 of what was written. */
export async function saveStream(source: NodeJS.ReadableStream, path: string): Promise<StoredObject> {
  const target = resolve(path);
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.${randomUUID()}.part`;
  const hasher = new HashingStream();
  try {
    await pipeIntoNewFile(source, hasher, tmp, 0o644);
    await rename(tmp, target);
    return hasher.result();
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function assertWritable(target: string, issuedAt: number): Promise<void> {
  const st = await stat(target).catch((err: unknown) => {
    if (ABSENT.has(errno(err) ?? "")) return null;
    throw err;
  });
  if (st && Math.round(st.mtimeMs) >= issuedAt) {
    throw new ObjectExistsError("the object was written after this upload URL was issued");
  }
}

async function moveInto(tmp: string, target: string, key: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(dirname(target), { recursive: true });
      await rename(tmp, target);
      return;
    } catch (err) {
      const code = errno(err);
      if (code === "EISDIR" || code === "ENOTDIR" || code === "EEXIST" || code === "ENOTEMPTY") {
        throw new InvalidKeyError(`key conflicts with another object's directory in the local store: ${key}`);
      }
      // A concurrent delete may prune the freshly made directory: make it again, once.
      if (code !== "ENOENT" || attempt > 0) throw err;
    }
  }
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Pipe `source` through `hasher` into a file created here, before any byte flows. A lazily
 * opened write stream can finish opening after a failed pipeline has already returned, so the
 * caller's clean-up could run first and leave the file behind (seen as a stray .part under load).
 */
async function pipeIntoNewFile(
  source: NodeJS.ReadableStream,
  hasher: HashingStream,
  path: string,
  mode: number,
): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    await pipeline(source, hasher, handle.createWriteStream());
  } finally {
    await handle.close().catch(() => undefined); // the stream closed it, unless it failed early
  }
}
