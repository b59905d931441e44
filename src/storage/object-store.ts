/**
 * The object store contract (raw uploads, canonical datasets, checkpoints, model artifacts).
 * Two implementations: LocalStore (a directory, served through signed API URLs; the embedded
 * default) and S3Store (any S3-compatible service, presigned URLs).
 */
import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

export interface StoredObject {
  sizeBytes: number;
  /** Lower-case hex SHA-256 of the bytes. */
  sha256: string;
}

export interface ObjectStore {
  readonly kind: "local" | "s3";
  /**
   * Streams `body` into `key`, computing size and SHA-256 on the way. The object appears whole or
   * not at all. With `sizeBytes`, a body of any other length fails with SizeMismatchError and
   * nothing is stored.
   */
  putStream(
    key: string,
    body: NodeJS.ReadableStream,
    opts?: { contentType?: string; sizeBytes?: number },
  ): Promise<StoredObject>;
  putFile(key: string, path: string, opts?: { contentType?: string }): Promise<StoredObject>;
  /** NotFoundError when absent. */
  getStream(key: string): Promise<NodeJS.ReadableStream>;
  /** Streams to a temporary file beside `path`, then renames it; size + SHA-256 of what was written. */
  downloadToFile(key: string, path: string): Promise<StoredObject>;
  stat(key: string): Promise<{ sizeBytes: number } | null>;
  /** Idempotent. */
  delete(key: string): Promise<void>;
  /** Deletes every object whose key starts with `prefix` (non-empty); returns how many. */
  deletePrefix(prefix: string): Promise<number>;
  /** Keys starting with `prefix` ("" for all), sorted by their UTF-8 bytes. */
  list(prefix: string): Promise<string[]>;
  /** A URL the client PUTs exactly `sizeBytes` bytes to, sending `headers`. */
  uploadUrl(
    key: string,
    opts: { expiresInSeconds: number; sizeBytes: number; contentType?: string },
  ): Promise<{ url: string; method: "PUT"; headers: Record<string, string> }>;
  /** A URL that GETs the object; with `fileName`, as an attachment of that name. */
  downloadUrl(key: string, opts: { expiresInSeconds: number; fileName?: string }): Promise<string>;
}

export class NotFoundError extends Error {
  override name = "NotFoundError";
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
  }
}

export class InvalidKeyError extends Error {
  override name = "InvalidKeyError";
}

/** A body whose length differs from the size declared (or signed) for it. Nothing was stored. */
export class SizeMismatchError extends Error {
  override name = "SizeMismatchError";
  constructor(
    readonly expectedBytes: number,
    readonly actualBytes: number,
  ) {
    super(
      actualBytes > expectedBytes
        ? `body is longer than the declared ${expectedBytes} bytes`
        : `body is ${actualBytes} bytes, ${expectedBytes} were declared`,
    );
  }
}

export const MAX_KEY_BYTES = 1024;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

// With the u flag, a surrogate range only matches surrogates that are not part of a pair.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function checkKeyLike(value: string, what: "key" | "prefix"): void {
  if (typeof value !== "string") throw new InvalidKeyError(`${what} must be a string`);
  if (Buffer.byteLength(value, "utf8") > MAX_KEY_BYTES) {
    throw new InvalidKeyError(`${what} is longer than ${MAX_KEY_BYTES} bytes`);
  }
  if (value.startsWith("/")) throw new InvalidKeyError(`${what} must be relative: ${JSON.stringify(value)}`);
  if (value.includes("\\")) throw new InvalidKeyError(`${what} must not contain a backslash`);
  if (CONTROL_CHARS.test(value)) throw new InvalidKeyError(`${what} must not contain control characters`);
  if (LONE_SURROGATE.test(value)) throw new InvalidKeyError(`${what} is not well-formed Unicode`);
  const segments = value.split("/");
  // A prefix may end with "/" (its last segment is then empty); a key may not.
  const inner = what === "prefix" ? segments.slice(0, -1) : segments;
  for (const segment of inner) {
    if (segment === "" || segment === "." || segment === "..") {
      throw new InvalidKeyError(`${what} has an empty, "." or ".." segment: ${JSON.stringify(value)}`);
    }
  }
  const last = segments[segments.length - 1];
  if (what === "prefix" && (last === "." || last === "..")) {
    throw new InvalidKeyError(`prefix has a "." or ".." segment: ${JSON.stringify(value)}`);
  }
}

/**
 * Keys are relative, "/"-separated, at most 1024 UTF-8 bytes, with no empty, "." or ".."
 * segment, no backslash and no control character (NUL included).
 */
export function assertValidKey(key: string): void {
  checkKeyLike(key, "key");
  if (key === "") throw new InvalidKeyError("key must not be empty");
}

/** A prefix follows the key rules but may be empty or end with "/". */
export function assertValidPrefix(prefix: string): void {
  checkKeyLike(prefix, "prefix");
}

/** Orders keys the way S3 lists them (by UTF-8 bytes). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** `attachment` Content-Disposition with an ASCII fallback and the RFC 5987 UTF-8 name. */
export function attachmentDisposition(fileName: string): string {
  const base = fileName.split(/[/\\]/).pop() ?? "";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it strips
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, "");
  if (clean === "") return "attachment";
  const ascii = clean.replace(/[^\x20-\x7e]/g, "_").replace(/["\\%]/g, "_");
  const encoded = encodeURIComponent(clean).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** Running size and SHA-256 of a byte sequence. */
export class Sha256Counter {
  private readonly hash: Hash = createHash("sha256");
  sizeBytes = 0;

  update(buf: Buffer): void {
    this.hash.update(buf);
    this.sizeBytes += buf.length;
  }

  result(): StoredObject {
    return { sizeBytes: this.sizeBytes, sha256: this.hash.copy().digest("hex") };
  }
}

/**
 * A pass-through that counts and hashes the bytes; `result()` after the stream ends. With
 * `maxBytes`, more bytes than that fail the stream with SizeMismatchError.
 */
export class HashingStream extends Transform {
  private readonly counter = new Sha256Counter();

  constructor(private readonly maxBytes?: number) {
    super();
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, done: TransformCallback): void {
    const buf = typeof chunk === "string" ? Buffer.from(chunk, encoding) : chunk;
    if (this.maxBytes !== undefined && this.counter.sizeBytes + buf.length > this.maxBytes) {
      done(new SizeMismatchError(this.maxBytes, this.counter.sizeBytes + buf.length));
      return;
    }
    this.counter.update(buf);
    done(null, buf);
  }

  get sizeBytes(): number {
    return this.counter.sizeBytes;
  }

  result(): StoredObject {
    return this.counter.result();
  }
}

export function checkExpiry(expiresInSeconds: number): void {
  if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > 7 * 24 * 3600) {
    throw new RangeError("expiresInSeconds must be an integer between 1 and 604800");
  }
}

export function checkSize(sizeBytes: number, max: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    throw new RangeError("sizeBytes must be a non-negative integer");
  }
  if (sizeBytes > max) throw new RangeError(`sizeBytes ${sizeBytes} exceeds the limit of ${max} bytes`);
}
