/**
 * S3Store: any S3-compatible service through @aws-sdk/client-s3; clients up- and download with
 * presigned URLs.
 *
 * Checksums: the client is built with requestChecksumCalculation and responseChecksumValidation
 * set to "WHEN_REQUIRED". The SDK's default (a CRC32 trailer with aws-chunked encoding on every
 * upload) is not understood by every S3-compatible server (s3rver stores the chunk framing as
 * object bytes) and puts a checksum into presigned PUT URLs that the uploader cannot match. The
 * store computes SHA-256 itself while streaming and returns it.
 *
 * Uploads stream in parts of `partSizeBytes` (s3-upload.ts), so memory stays at about three
 * parts whatever the object's size.
 */

import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
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
  type StoredObject,
} from "./object-store.ts";
import { uploadStream } from "./s3-upload.ts";

export interface S3StoreOptions {
  bucket: string;
  region: string;
  /** For S3-compatible services (MinIO, s3rver, ...), e.g. "http://127.0.0.1:9000". */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Static credentials; without them the SDK's default provider chain is used. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Keys per ListObjectsV2 page, 1–1000 (default 1000). */
  listPageSize?: number;
  /** Multipart part size, at least 5 MiB (default 16 MiB). */
  partSizeBytes?: number;
}

const MiB = 1024 * 1024;
const MIN_PART_BYTES = 5 * MiB;
/** S3's limit for a single PUT, and so for a presigned upload. */
const MAX_PUT_BYTES = 5 * 1024 * MiB;

function errorName(err: unknown): string | undefined {
  return (err as { name?: string } | null)?.name;
}

function isMissing(err: unknown): boolean {
  const name = errorName(err);
  return name === "NoSuchKey" || name === "NotFound";
}

export class S3Store implements ObjectStore {
  readonly kind = "s3" as const;
  readonly bucket: string;
  readonly client: S3Client;
  private readonly pageSize: number;
  private readonly partSize: number;

  constructor(opts: S3StoreOptions) {
    if (!opts.bucket) throw new Error("S3Store: bucket is required");
    if (!opts.region) throw new Error("S3Store: region is required");
    this.bucket = opts.bucket;
    this.pageSize = opts.listPageSize ?? 1000;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > 1000) {
      throw new RangeError("S3Store: listPageSize must be an integer in 1..1000");
    }
    this.partSize = opts.partSizeBytes ?? 16 * MiB;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_BYTES || this.partSize > MAX_PUT_BYTES) {
      throw new RangeError("S3Store: partSizeBytes must be an integer between 5 MiB and 5 GiB");
    }
    this.client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      credentials: opts.credentials,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  /** Closes the client's sockets (graceful shutdown, tests). */
  destroy(): void {
    this.client.destroy();
  }

  async putStream(
    key: string,
    body: NodeJS.ReadableStream,
    opts: { contentType?: string; sizeBytes?: number } = {},
  ): Promise<StoredObject> {
    assertValidKey(key);
    return uploadStream(this.client, this.bucket, key, body, {
      contentType: opts.contentType,
      sizeBytes: opts.sizeBytes,
      partSize: this.partSize,
    });
  }

  async putFile(key: string, path: string, opts: { contentType?: string } = {}): Promise<StoredObject> {
    assertValidKey(key);
    const { size } = await stat(path);
    return this.putStream(key, createReadStream(path), { contentType: opts.contentType, sizeBytes: size });
  }

  private async getObject(key: string): Promise<GetObjectCommandOutput & { Body: Readable }> {
    assertValidKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!out.Body) throw new Error(`S3: GetObject returned no body for ${key}`);
      return out as GetObjectCommandOutput & { Body: Readable };
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(key);
      throw err;
    }
  }

  async getStream(key: string): Promise<NodeJS.ReadableStream> {
    return (await this.getObject(key)).Body;
  }

  async downloadToFile(key: string, path: string): Promise<StoredObject> {
    const out = await this.getObject(key);
    const target = resolve(path);
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.${randomUUID()}.part`;
    const hasher = new HashingStream();
    try {
      await pipeline(out.Body, hasher, createWriteStream(tmp, { flags: "wx" }));
      if (out.ContentLength !== undefined && hasher.sizeBytes !== out.ContentLength) {
        throw new Error(
          `S3: download of ${key} was truncated (${hasher.sizeBytes} of ${out.ContentLength} bytes)`,
        );
      }
      await rename(tmp, target);
      return hasher.result();
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async stat(key: string): Promise<{ sizeBytes: number } | null> {
    assertValidKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { sizeBytes: out.ContentLength ?? 0 };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** One ListObjectsV2 page after another; yields each page's keys. */
  private async *pages(prefix: string): AsyncGenerator<string[]> {
    assertValidPrefix(prefix);
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix === "" ? undefined : prefix,
          MaxKeys: this.pageSize,
          ContinuationToken: token,
        }),
      );
      const keys = (out.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]));
      if (keys.length > 0) yield keys;
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const page of this.pages(prefix)) keys.push(...page);
    return keys.sort(compareKeys);
  }

  async deletePrefix(prefix: string): Promise<number> {
    if (prefix === "") throw new InvalidKeyError("deletePrefix needs a non-empty prefix");
    let deleted = 0;
    // Each page is deleted before the next is fetched; the continuation token marks a position
    // after the page's last key, so deleting what was listed does not disturb the listing.
    for await (const page of this.pages(prefix)) {
      const out = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: page.map((Key) => ({ Key })), Quiet: true },
        }),
      );
      const errors = out.Errors ?? [];
      if (errors.length > 0) {
        const e = errors[0];
        throw new Error(
          `S3: could not delete ${errors.length} object(s), e.g. ${e?.Key}: ${e?.Code} ${e?.Message}`,
        );
      }
      deleted += page.length;
    }
    return deleted;
  }

  async uploadUrl(
    key: string,
    opts: { expiresInSeconds: number; sizeBytes: number; contentType?: string },
  ): Promise<{ url: string; method: "PUT"; headers: Record<string, string> }> {
    assertValidKey(key);
    checkExpiry(opts.expiresInSeconds);
    checkSize(opts.sizeBytes, MAX_PUT_BYTES);
    // ContentLength is part of the signature (X-Amz-SignedHeaders=content-length;host): S3
    // refuses a body of any other length.
    const url = await getSignedUrl(
      this.client,
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ContentLength: opts.sizeBytes,
        ContentType: opts.contentType,
      }),
      { expiresIn: opts.expiresInSeconds, signableHeaders: new Set(["content-length"]) },
    );
    const headers: Record<string, string> = { "Content-Length": String(opts.sizeBytes) };
    if (opts.contentType) headers["Content-Type"] = opts.contentType;
    return { url, method: "PUT", headers };
  }

  async downloadUrl(key: string, opts: { expiresInSeconds: number; fileName?: string }): Promise<string> {
    assertValidKey(key);
    checkExpiry(opts.expiresInSeconds);
    return getSignedUrl(
      this.client,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ResponseContentDisposition: opts.fileName ? attachmentDisposition(opts.fileName) : undefined,
      }),
      { expiresIn: opts.expiresInSeconds },
    );
  }
}
