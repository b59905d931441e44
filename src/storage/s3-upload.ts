/**
 * Streaming a body into one S3 object. The SDK is only ever given Buffers with a known length.
 * A body is read in parts of `partSize` bytes; one that ends within the first part goes up with a
 * single PutObject, a longer one as a multipart upload (the next part is read while the previous
 * one uploads; aborted on any error), so memory stays at about three parts whatever the object's
 * size. With Buffer bodies the SDK signs each request's payload SHA-256 (x-amz-content-sha256),
 * which S3 verifies. Size and SHA-256 are computed here, on the way.
 */

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { checkSize, Sha256Counter, SizeMismatchError, type StoredObject } from "./object-store.ts";

const MAX_PARTS = 10_000;
/** S3's largest object: 5 TiB. */
const MAX_OBJECT_BYTES = 5 * 1024 * 1024 * 1024 * 1024;

/** Yields the stream's bytes in Buffers of exactly `size` bytes (the last one may be shorter). */
async function* chunksOf(body: NodeJS.ReadableStream, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of body) {
    let chunk = typeof piece === "string" ? Buffer.from(piece) : piece;
    while (pendingBytes + chunk.length >= size) {
      const take = size - pendingBytes;
      pending.push(chunk.subarray(0, take));
      yield Buffer.concat(pending, size);
      chunk = chunk.subarray(take);
      pending = [];
      pendingBytes = 0;
    }
    if (chunk.length > 0) {
      pending.push(chunk);
      pendingBytes += chunk.length;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

/**
 * Streams `body` into `key` of `bucket`, in parts of `partSize` bytes (more when `sizeBytes`
 * needs it to stay within 10 000 parts). With `sizeBytes`, a body of any other length fails with
 * SizeMismatchError and nothing is stored.
 */
export async function uploadStream(
  client: S3Client,
  bucket: string,
  key: string,
  body: NodeJS.ReadableStream,
  opts: { contentType?: string; sizeBytes?: number; partSize: number },
): Promise<StoredObject> {
  const expected = opts.sizeBytes;
  if (expected !== undefined) checkSize(expected, MAX_OBJECT_BYTES);
  const partSize =
    expected === undefined ? opts.partSize : Math.max(opts.partSize, Math.ceil(expected / MAX_PARTS));
  const digest = new Sha256Counter();
  const parts = chunksOf(body, partSize);
  const take = async (): Promise<Buffer | undefined> => {
    const next = await parts.next();
    if (next.done) return undefined;
    digest.update(next.value);
    if (expected !== undefined && digest.sizeBytes > expected) {
      throw new SizeMismatchError(expected, digest.sizeBytes);
    }
    return next.value;
  };
  const checkEnd = () => {
    if (expected !== undefined && digest.sizeBytes !== expected) {
      throw new SizeMismatchError(expected, digest.sizeBytes);
    }
  };

  let uploadId: string | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  const etags: string[] = [];
  const startPart = (partNumber: number, data: Buffer) => {
    if (partNumber > MAX_PARTS) throw new Error(`S3: object needs more than ${MAX_PARTS} parts`);
    inFlight = inFlight.then(async () => {
      const out = await client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: data,
          ContentLength: data.length,
        }),
      );
      if (!out.ETag) throw new Error(`S3: UploadPart ${partNumber} returned no ETag`);
      etags[partNumber - 1] = out.ETag;
    });
    inFlight.catch(() => undefined); // awaited later; never an unhandled rejection meanwhile
  };

  try {
    const first = (await take()) ?? Buffer.alloc(0);
    const second = first.length === partSize ? await take() : undefined;
    if (second === undefined) {
      // The whole body fits in one part: a single PUT.
      checkEnd();
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: first,
          ContentLength: first.length,
          ContentType: opts.contentType,
        }),
      );
      return digest.result();
    }

    const created = await client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: opts.contentType }),
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new Error("S3: CreateMultipartUpload returned no UploadId");
    startPart(1, first);
    startPart(2, second);
    let partNumber = 2;
    // The next part is read while the previous one uploads: at most one upload in flight.
    for (let next = await take(); next !== undefined; next = await take()) {
      await inFlight;
      startPart(++partNumber, next);
    }
    await inFlight;
    checkEnd();
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    return digest.result();
  } catch (err) {
    // Stop reading: returning the generator ends its for-await, which destroys the body.
    await parts.return(undefined).catch(() => undefined);
    await inFlight.catch(() => undefined);
    if (uploadId !== undefined) {
      await client
        .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
        .catch(() => undefined);
    }
    throw err;
  }
}
