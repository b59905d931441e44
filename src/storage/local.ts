/**
 * LocalStore: objects as files under a directory, for the embedded `start` mode. Clients reach
 * them through signed URLs that localStoreRouter serves (the API mounts it at /objects).
 *
 * Layout: <root>/objects/<key> (the key's "/" are directories), <root>/tmp/ for partial uploads
 * (same filesystem, so the final rename is atomic). One consequence of the directory layout: a
 * key cannot also be the directory of another key ("a" and "a/b" cannot both exist); putting
 * such a key fails with InvalidKeyError, as does a key with a segment longer than 255 bytes.
 * Content types are not kept: downloads are served as application/octet-stream attachments.
 *
 * Signed URLs (HMAC-SHA256 with `signingSecret`, compared in constant time):
 *   PUT <publicBaseUrl><mountPath>/<key>?expires=<unix s>&size=<bytes>&iat=<ms>&sig=<mac>
 *   GET <publicBaseUrl><mountPath>/<key>?expires=<unix s>[&name=<file name>]&sig=<mac>
 * `iat` is the URL's issue stamp. Every write stamps the file's mtime with a fresh stamp, and a PUT
 * is refused when the object was written at or after its URL was issued: a used upload URL cannot
 * be replayed to overwrite the object; overwriting takes a freshly signed URL. (This needs millisecond
 * file timestamps, as ext4, xfs, btrfs, tmpfs and apfs have.)
 */
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { createReadStream, type Dir, type ReadStream } from "node:fs";
import {
  type FileHandle,
  mkdir,
  open,
  opendir,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
  utimes,
} from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { finished, PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Request, type Response, Router } from "express";
import {
  assertValidKey,
  assertValidPrefix,
  attachmentDisposition,
  checkExpiry,
  checkSize,
  compareKeys,
  HashingStream,
  InvalidKeyError,
  NotFoundError,
  type ObjectStore,
  SizeMismatchError,
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

let lastStamp = 0;
/** Strictly increasing millisecond stamps (per process): URL issue times and write times. */
function nextStamp(): number {
  lastStamp = Math.max(Date.now(), lastStamp + 1);
  return lastStamp;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** File name limit of common filesystems (ext4, xfs, apfs). */
const MAX_SEGMENT_BYTES = 255;

const ABSENT = new Set(["ENOENT", "ENOTDIR", "ENAMETOOLONG"]);

interface WriteOptions {
  sizeBytes?: number;
  /** Refuse (ObjectExistsError) when the key holds an object written at or after this stamp. */
  issuedAt?: number;
}

/** The object was written after the upload URL was issued; a fresh URL is needed to overwrite. */
class ObjectExistsError extends Error {
  override name = "ObjectExistsError";
}

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

  /** Streams `body` to a temporary file, checks it, stamps it and renames it over the key's file. */
  private async write(
    key: string,
    body: NodeJS.ReadableStream,
    opts: WriteOptions = {},
  ): Promise<StoredObject> {
    const target = this.pathFor(key);
    if (opts.sizeBytes !== undefined) checkSize(opts.sizeBytes, Number.MAX_SAFE_INTEGER);
    await this.ensureDirs();
    if (opts.issuedAt !== undefined) await this.assertWritable(target, opts.issuedAt);
    const tmp = join(this.tmpDir, `${randomUUID()}.part`);
    const hasher = new HashingStream(opts.sizeBytes);
    try {
      await pipeIntoNewFile(body, hasher, tmp, 0o644);
      if (opts.sizeBytes !== undefined && hasher.sizeBytes !== opts.sizeBytes) {
        throw new SizeMismatchError(opts.sizeBytes, hasher.sizeBytes);
      }
      await syncFile(tmp);
      const stamp = new Date(nextStamp());
      await utimes(tmp, stamp, stamp);
      if (opts.issuedAt !== undefined) await this.assertWritable(target, opts.issuedAt);
      await this.moveInto(tmp, target, key);
      return hasher.result();
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  private async assertWritable(target: string, issuedAt: number): Promise<void> {
    const st = await stat(target).catch((err: unknown) => {
      if (ABSENT.has(errno(err) ?? "")) return null;
      throw err;
    });
    if (st && Math.round(st.mtimeMs) >= issuedAt) {
      throw new ObjectExistsError("the object was written after this upload URL was issued");
    }
  }

  private async moveInto(tmp: string, target: string, key: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await mkdir(dirname(target), { recursive: true });
        await rename(tmp, target);
        return;
      } catch (err) {
        const code = errno(err);
        if (code === "EISDIR" || code === "ENOTDIR" || code === "EEXIST" || code === "ENOTEMPTY") {
          throw new InvalidKeyError(
            `key conflicts with another object's directory in the local store: ${key}`,
          );
        }
        // A concurrent delete may prune the freshly made directory: make it again, once.
        if (code !== "ENOENT" || attempt > 0) throw err;
      }
    }
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
    const source = await this.getStream(key);
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
    const iat = nextStamp();
    const sig = this.sign(putFields(key, expires, opts.sizeBytes, iat));
    const query = new URLSearchParams({
      expires: String(expires),
      size: String(opts.sizeBytes),
      iat: String(iat),
      sig,
    });
    const headers: Record<string, string> = { "Content-Length": String(opts.sizeBytes) };
    if (opts.contentType) headers["Content-Type"] = opts.contentType;
    return { url: `${this.baseUrl}/${encodeKey(key)}?${query}`, method: "PUT", headers };
  }

  async downloadUrl(key: string, opts: { expiresInSeconds: number; fileName?: string }): Promise<string> {
    this.pathFor(key);
    checkExpiry(opts.expiresInSeconds);
    const expires = Math.floor(Date.now() / 1000) + opts.expiresInSeconds;
    const query = new URLSearchParams({ expires: String(expires) });
    if (opts.fileName) query.set("name", opts.fileName);
    query.set("sig", this.sign(getFields(key, expires, opts.fileName ?? "")));
    return `${this.baseUrl}/${encodeKey(key)}?${query}`;
  }

  private sign(fields: string): string {
    return createHmac("sha256", this.secret).update(fields).digest("base64url");
  }

  /** Constant-time check of a URL signature. */
  verify(fields: string, sig: string): boolean {
    const expected = Buffer.from(this.sign(fields));
    const given = Buffer.from(sig);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Used by the router: a signed upload (size and replay checks included). */
  receiveUpload(key: string, body: NodeJS.ReadableStream, sizeBytes: number, issuedAt: number) {
    return this.write(key, body, { sizeBytes, issuedAt });
  }
}

function putFields(key: string, expires: number, size: number, iat: number): string {
  return JSON.stringify(["PUT", key, expires, size, iat]);
}

function getFields(key: string, expires: number, name: string): string {
  return JSON.stringify(["GET", key, expires, name]);
}

function encodeKey(key: string): string {
  return key.split("/").map(encodeURIComponent).join("/");
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function queryString(req: Request, name: string): string | undefined {
  const value = (req.query as Record<string, unknown>)[name];
  return typeof value === "string" ? value : undefined;
}

function queryInt(req: Request, name: string): number | undefined {
  const value = queryString(req, name);
  return value !== undefined && /^\d{1,16}$/.test(value) ? Number(value) : undefined;
}

function fail(res: Response, status: number, message: string): void {
  if (!res.headersSent) res.status(status).json({ error: message });
}

/**
 * Serves the LocalStore's signed URLs. Mount it before any body parser:
 * `app.use("/objects", localStoreRouter(store))`.
 */
export function localStoreRouter(store: LocalStore): Router {
  const router = Router();

  router.use(async (req, res) => {
    let key: string;
    try {
      key = decodeURIComponent(req.path.slice(1));
      assertValidKey(key);
    } catch (err) {
      fail(res, 400, err instanceof InvalidKeyError ? err.message : "malformed object key");
      return;
    }
    const expires = queryInt(req, "expires");
    const sig = queryString(req, "sig");
    const now = Date.now() / 1000;

    if (req.method === "PUT") {
      const size = queryInt(req, "size");
      const iat = queryInt(req, "iat");
      if (expires === undefined || size === undefined || iat === undefined || sig === undefined) {
        fail(res, 403, "missing or malformed signature parameters");
        return;
      }
      if (!store.verify(putFields(key, expires, size, iat), sig)) {
        fail(res, 403, "invalid signature");
        return;
      }
      if (now > expires) {
        fail(res, 403, "upload URL has expired");
        return;
      }
      if (size > store.maxUploadBytes) {
        fail(res, 413, `upload is larger than ${store.maxUploadBytes} bytes`);
        return;
      }
      const declared = req.headers["content-length"];
      if (declared !== undefined && Number(declared) !== size) {
        fail(res, 400, `Content-Length ${declared} does not match the signed size ${size}`);
        return;
      }
      // The body goes through a PassThrough so that a failed upload does not destroy the request
      // (and with it the connection) before the error response is sent.
      const body = new PassThrough();
      req.pipe(body);
      finished(req, (err) => {
        if (err) body.destroy(err); // the client went away mid-upload
      });
      try {
        const stored = await store.receiveUpload(key, body, size, iat);
        res.status(200).json(stored);
      } catch (err) {
        req.unpipe(body);
        req.resume(); // discard whatever is left of the body
        if (err instanceof SizeMismatchError) {
          fail(res, 400, `${err.message} (signed size ${size})`);
        } else if (err instanceof ObjectExistsError || err instanceof InvalidKeyError) {
          fail(res, 409, err.message);
        } else if (req.destroyed) {
          res.destroy();
        } else {
          throw err;
        }
      }
      return;
    }

    if (req.method === "GET" || req.method === "HEAD") {
      const name = queryString(req, "name") ?? "";
      if (expires === undefined || sig === undefined) {
        fail(res, 403, "missing or malformed signature parameters");
        return;
      }
      if (!store.verify(getFields(key, expires, name), sig)) {
        fail(res, 403, "invalid signature");
        return;
      }
      if (now > expires) {
        fail(res, 403, "download URL has expired");
        return;
      }
      let object: { stream: NodeJS.ReadableStream; sizeBytes: number };
      try {
        object = await store.openForRead(key);
      } catch (err) {
        if (err instanceof NotFoundError) {
          fail(res, 404, "no such object");
          return;
        }
        throw err;
      }
      res.status(200);
      res.setHeader("Content-Type", "application/octet-stream");
      res.setHeader("Content-Length", String(object.sizeBytes));
      res.setHeader("Content-Disposition", attachmentDisposition(name || key));
      res.setHeader("X-Content-Type-Options", "nosniff");
      res.setHeader("Cache-Control", "private, no-store");
      if (req.method === "HEAD") {
        (object.stream as ReadStream).destroy();
        res.end();
        return;
      }
      try {
        await pipeline(object.stream, res);
      } catch {
        res.destroy();
      }
      return;
    }

    res.setHeader("Allow", "GET, HEAD, PUT");
    fail(res, 405, "method not allowed");
  });

  return router;
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
