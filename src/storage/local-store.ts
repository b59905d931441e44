/**
 * LocalStore: objects as files under a directory, for the embedded `start` mode. Clients reach
 * them through signed URLs (local-signing.ts) that localStoreRouter (local-router.ts) serves;
 * the API mounts it at /objects.
 *
 * Layout: <root>/objects/<key> (the key's "/" are directories), <root>/tmp/ for partial uploads
 * (same filesystem, so the final rename is atomic; local-write.ts). One consequence of the
 * directory layout: a key cannot also be the directory of another key ("a" and "a/b" cannot both
 * exist); putting such a key fails with InvalidKeyError, as does a key with a segment longer than
 * 255 bytes. Content types are not kept: downloads are served as application/octet-stream
 * attachments.
 */
import { createReadStream, type Dir } from "node:fs";
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  opendir,
  readdir,
  rm,
  rmdir,
  stat,
  unlink,
} from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { signedGetUrl, signedPutUrl, verifySignature } from "./local-signing.ts";
import { ABSENT, errno, nextStamp, saveStream, type WriteOptions, writeObjectFile } from "./local-write.ts";
import {
  assertValidKey,
  assertValidPrefix,
  checkExpiry,
  checkSize,
  compareKeys,
  InvalidKeyError,
  NotFoundError,
  type ObjectStore,
  type StoredObject,
} from "./object-store.ts";

export interface LocalStoreOptions {
  /** Directory that holds everything (created when missing). */
  root: string;
  /** Public base URL of the API, e.g. "http://localhost:4000"; signed URLs start with it. */
  publicBaseUrl: string;
  /** Secret for the URL signatures (at least 16 characters). */
  signingSecret: string;
  /** Largest upload a signed URL may be issued for; unlimited when absent. */
  maxUploadBytes?: number;
  /** Where the API mounts localStoreRouter; default "/objects". */
  mountPath?: string;
}

/** File name limit of common filesystems (ext4, xfs, apfs). */
const MAX_SEGMENT_BYTES = 255;

export class LocalStore implements ObjectStore {
  readonly kind = "local" as const;
  readonly root: string;
  readonly maxUploadBytes: number;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly baseUrl: string;
  private readonly secret: string;
  private ready: Promise<void> | undefined;

  constructor(opts: LocalStoreOptions) {
    if (!opts.root) throw new Error("LocalStore: root is required");
    if (typeof opts.signingSecret !== "string" || opts.signingSecret.length < 16) {
      throw new Error("LocalStore: signingSecret must be at least 16 characters");
    }
    const base = new URL(opts.publicBaseUrl); // throws on a malformed URL
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new Error("LocalStore: publicBaseUrl must be http(s)");
    }
    const mount = `/${(opts.mountPath ?? "/objects").replace(/^\/+|\/+$/g, "")}`;
    this.baseUrl = `${opts.publicBaseUrl.replace(/\/+$/, "")}${mount === "/" ? "" : mount}`;
    this.root = resolve(opts.root);
    this.objectsDir = join(this.root, "objects");
    this.tmpDir = join(this.root, "tmp");
    this.secret = opts.signingSecret;
    this.maxUploadBytes = opts.maxUploadBytes ?? Number.MAX_SAFE_INTEGER;
  }

  private ensureDirs(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.objectsDir, { recursive: true });
      await mkdir(this.tmpDir, { recursive: true });
    })().catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  /** The file of `key`; InvalidKeyError unless it resolves strictly inside the objects directory. */
  private pathFor(key: string): string {
    assertValidKey(key);
    const segments = key.split("/");
    if (segments.some((segment) => Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)) {
      throw new InvalidKeyError(`the local store takes key segments of at most ${MAX_SEGMENT_BYTES} bytes`);
    }
    const path = resolve(this.objectsDir, ...segments);
    if (!path.startsWith(this.objectsDir + sep)) throw new InvalidKeyError(`key escapes the store: ${key}`);
    return path;
  }

  private keyFor(path: string): string {
    return path
      .slice(this.objectsDir.length + 1)
      .split(sep)
      .join("/");
  }

  /** Streams `body` into the key's file (local-write.ts): whole or not at all. */
  private async write(
    key: string,
    body: NodeJS.ReadableStream,
    opts: WriteOptions = {},
  ): Promise<StoredObject> {
    const target = this.pathFor(key);
    if (opts.sizeBytes !== undefined) checkSize(opts.sizeBytes, Number.MAX_SAFE_INTEGER);
    await this.ensureDirs();
    return writeObjectFile(body, target, key, this.tmpDir, opts);
  }

  /** Removes now-empty directories from `dir` up to (not including) the objects directory. */
  private async prune(dir: string): Promise<void> {
    let current = dir;
    while (current.startsWith(this.objectsDir + sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (or gone): stop
      }
      current = dirname(current);
    }
  }

  private async openObject(key: string): Promise<{ handle: FileHandle; sizeBytes: number }> {
    const path = this.pathFor(key);
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (err) {
      if (ABSENT.has(errno(err) ?? "")) throw new NotFoundError(key);
      throw err;
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new NotFoundError(key);
      return { handle, sizeBytes: st.size };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  putStream(
    key: string,
    body: NodeJS.ReadableStream,
    opts: { contentType?: string; sizeBytes?: number } = {},
  ): Promise<StoredObject> {
    return this.write(key, body, { sizeBytes: opts.sizeBytes });
  }

  async putFile(key: string, path: string, _opts: { contentType?: string } = {}): Promise<StoredObject> {
    this.pathFor(key);
    const { size } = await stat(path);
    return this.write(key, createReadStream(path), { sizeBytes: size });
  }

  async getStream(key: string): Promise<NodeJS.ReadableStream> {
    const { handle } = await this.openObject(key);
    return handle.createReadStream(); // closes the handle when done
  }

  /** The object's bytes and size, for the HTTP router. */
  async openForRead(key: string): Promise<{ stream: NodeJS.ReadableStream; sizeBytes: number }> {
    const { handle, sizeBytes } = await this.openObject(key);
    return { stream: handle.createReadStream(), sizeBytes };
  }

  async downloadToFile(key: string, path: string): Promise<StoredObject> {
    return saveStream(await this.getStream(key), path);
  }

  async stat(key: string): Promise<{ sizeBytes: number } | null> {
    try {
      const st = await stat(this.pathFor(key));
      return st.isFile() ? { sizeBytes: st.size } : null;
    } catch (err) {
      if (ABSENT.has(errno(err) ?? "")) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathFor(key);
    if (await this.unlinkObject(path)) await this.prune(dirname(path));
  }

  private async unlinkObject(path: string): Promise<boolean> {
    try {
      await unlink(path);
      return true;
    } catch (err) {
      const code = errno(err);
      // EISDIR/EPERM: a directory of other keys, not an object.
      if (code && (ABSENT.has(code) || code === "EISDIR" || code === "EPERM")) return false;
      throw err;
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    if (prefix === "") throw new InvalidKeyError("deletePrefix needs a non-empty prefix");
    const keys = await this.list(prefix);
    const dirs = new Set<string>();
    let deleted = 0;
    for (const key of keys) {
      const path = this.pathFor(key);
      if (await this.unlinkObject(path)) {
        deleted++;
        dirs.add(dirname(path));
      }
    }
    // Deepest first, so parents empty out before their turn.
    for (const dir of [...dirs].sort((a, b) => b.length - a.length)) await this.prune(dir);
    return deleted;
  }

  /**
   * Removes partial uploads not written to for `olderThanSeconds` (a live upload keeps touching its
   * file): what a crash mid-upload leaves in tmp/. Returns how many went.
   */
  async sweepTemporaries(olderThanSeconds: number): Promise<number> {
    let removed = 0;
    const cutoff = Date.now() - olderThanSeconds * 1000;
    const names = await readdir(this.tmpDir).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(this.tmpDir, name);
      const st = await lstat(path).catch(() => null);
      if (st && st.mtimeMs < cutoff) {
        await rm(path, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  async list(prefix: string): Promise<string[]> {
    assertValidPrefix(prefix);
    const dirKey = prefix.slice(0, prefix.lastIndexOf("/") + 1); // "a/b/c" → "a/b/"
    const start =
      dirKey === "" ? this.objectsDir : resolve(this.objectsDir, ...dirKey.slice(0, -1).split("/"));
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries: Dir;
      try {
        entries = await opendir(dir);
      } catch (err) {
        if (ABSENT.has(errno(err) ?? "")) return;
        throw err;
      }
      for await (const entry of entries) {
        const path = join(dir, entry.name);
        const key = this.keyFor(path);
        if (entry.isDirectory()) {
          const asDir = `${key}/`;
          if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) await walk(path);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          keys.push(key);
        }
      }
    };
    await walk(start);
    return keys.sort(compareKeys);
  }

  async uploadUrl(
    key: string,
    opts: { expiresInSeconds: number; sizeBytes: number; contentType?: string },
  ): Promise<{ url: string; method: "PUT"; headers: Record<string, string> }> {
    this.pathFor(key);
    checkExpiry(opts.expiresInSeconds);
    checkSize(opts.sizeBytes, this.maxUploadBytes);
    const expires = Math.floor(Date.now() / 1000) + opts.expiresInSeconds;
    const url = signedPutUrl(this.baseUrl, this.secret, key, expires, opts.sizeBytes, nextStamp());
    const headers: Record<string, string> = { "Content-Length": String(opts.sizeBytes) };
    if (opts.contentType) headers["Content-Type"] = opts.contentType;
    return { url, method: "PUT", headers };
  }

  async downloadUrl(key: string, opts: { expiresInSeconds: number; fileName?: string }): Promise<string> {
    this.pathFor(key);
    checkExpiry(opts.expiresInSeconds);
    const expires = Math.floor(Date.now() / 1000) + opts.expiresInSeconds;
    return signedGetUrl(this.baseUrl, this.secret, key, expires, opts.fileName);
  }

  /** Constant-time check of a URL signature (local-signing.ts). */
  verify(fields: string, sig: string): boolean {
    return verifySignature(this.secret, fields, sig);
  }

  /** Used by the router: a signed upload (size and replay checks included). */
  receiveUpload(key: string, body: NodeJS.ReadableStream, sizeBytes: number, issuedAt: number) {
    return this.write(key, body, { sizeBytes, issuedAt });
  }
}
