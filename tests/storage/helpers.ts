import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";

/** A fresh temporary directory and a function that removes it. */
export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `trapdoor-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Random bytes (seeded by nothing: each run differs, which is the point of a round trip). */
export function randomBuffer(bytes: number): Buffer {
  return randomBytes(bytes);
}

/** A readable that emits `data` in chunks of uneven sizes, with no length known up front. */
export function unevenStream(data: Buffer, maxChunk = 300_000): Readable {
  let offset = 0;
  let i = 0;
  return new Readable({
    read() {
      if (offset >= data.length) {
        this.push(null);
        return;
      }
      const size = 1 + ((i++ * 7919 + 13) % maxChunk);
      this.push(data.subarray(offset, offset + size));
      offset += size;
    },
  });
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

// s3rver ships no type declarations: the few members used here.
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

export interface S3rverHandle {
  endpoint: string;
  bucket: string;
  region: string;
  /** s3rver's built-in account (it checks the access key id; V4 signatures are not verified). */
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const require = createRequire(import.meta.url);

type CipherFactory = (algorithm: string, key: Buffer, iv: Buffer, options?: unknown) => unknown;
let desShimmed = false;

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with single DES ("des"), which OpenSSL 3 only
 * has in its legacy provider: every truncated listing fails with a 500. Triple DES with the 8-byte
 * key repeated three times is the same cipher, byte for byte, so "des" is routed there. Only "des"
 * changes (it would throw otherwise); this is test code, in the test process only.
 */
function shimDesForS3rver(): void {
  if (desShimmed) return;
  desShimmed = true;
  const nodeCrypto = require("node:crypto") as Record<"createCipheriv" | "createDecipheriv", CipherFactory>;
  for (const name of ["createCipheriv", "createDecipheriv"] as const) {
    const original = nodeCrypto[name];
    nodeCrypto[name] = (algorithm, key, iv, options) =>
      algorithm === "des" && key.length === 8
        ? original("des-ede3-cbc", Buffer.concat([key, key, key]), iv, options)
        : original(algorithm, key, iv, options);
  }
}

/** A real s3rver on 127.0.0.1, a random free port, a temporary directory and one bucket. */
export async function startS3rver(bucket = "trapdoor-test"): Promise<S3rverHandle> {
  shimDesForS3rver();
  const S3rver = require("s3rver") as S3rverConstructor;
  const dir = await tempDir("s3rver");
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir.path,
    configureBuckets: [{ name: bucket }],
  });
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    await dir.remove();
    throw err;
  }
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    bucket,
    region: "us-east-1",
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    async stop() {
      const closed = server.close();
      server.httpServer?.closeAllConnections(); // keep-alive sockets would hold close() open
      await closed;
      await dir.remove();
    },
  };
}
