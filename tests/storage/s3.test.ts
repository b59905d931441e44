import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { createObjectStore } from "../../src/storage/index.ts";
import { InvalidKeyError, NotFoundError, SizeMismatchError } from "../../src/storage/object-store.ts";
import { S3Store } from "../../src/storage/s3.ts";
import {
  randomBuffer,
  readAll,
  type S3rverHandle,
  sha256,
  startS3rver,
  tempDir,
  unevenStream,
} from "./helpers.ts";

const MiB = 1024 * 1024;

describe("S3Store against a real s3rver", () => {
  let s3: S3rverHandle;
  let store: S3Store;
  let dir: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    dir = await tempDir("s3-test");
    s3 = await startS3rver();
    store = new S3Store({
      bucket: s3.bucket,
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: s3.credentials,
      listPageSize: 7, // several pages in the list/deletePrefix test
      partSizeBytes: 5 * MiB, // the smallest S3 allows: multipart from 5 MiB on
    });
  });

  after(async () => {
    store?.destroy();
    await s3?.stop();
    await dir?.remove();
  });

  it("streams a body of unknown length over 5 MiB up (multipart) and back, byte for byte", async () => {
    const data = randomBuffer(12 * MiB + 4321); // three parts
    const key = "tenants/t1/datasets/d1/raw/big.bin";
    const stored = await store.putStream(key, unevenStream(data), { contentType: "application/x-test" });
    assert.deepEqual(stored, { sizeBytes: data.length, sha256: sha256(data) });
    assert.deepEqual(await store.stat(key), { sizeBytes: data.length });
    const head = await store.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
    assert.equal(head.ContentType, "application/x-test");

    const back = await readAll(await store.getStream(key));
    assert.equal(back.length, data.length);
    assert.equal(sha256(back), sha256(data));

    const path = join(dir.path, "staged", "big.bin");
    assert.deepEqual(await store.downloadToFile(key, path), stored);
    assert.ok((await readFile(path)).equals(data));
  });

  it("puts small, empty, exactly-one-part and file bodies with a single PUT", async () => {
    for (const size of [0, 1, 100_000, 5 * MiB]) {
      const data = randomBuffer(size);
      const key = `single/${size}.bin`;
      assert.deepEqual(await store.putStream(key, unevenStream(data), { sizeBytes: size }), {
        sizeBytes: size,
        sha256: sha256(data),
      });
      assert.ok((await readAll(await store.getStream(key))).equals(data), `${size} bytes`);
    }
    const data = randomBuffer(6 * MiB + 1);
    const src = join(dir.path, "src.bin");
    await writeFile(src, data);
    assert.deepEqual(await store.putFile("single/file.bin", src), {
      sizeBytes: data.length,
      sha256: sha256(data),
    });
    assert.ok((await readAll(await store.getStream("single/file.bin"))).equals(data));
    assert.equal(await store.deletePrefix("single/"), 5);
  });

  it("stores nothing when a body is shorter or longer than its declared size", async () => {
    const cases: [number, number][] = [
      [1000, 999],
      [1000, 1001],
      [11 * MiB, 11 * MiB - 1],
      [11 * MiB, 11 * MiB + 1],
      [6 * MiB, 12 * MiB],
    ];
    for (const [declared, actual] of cases) {
      const key = `mismatch/${declared}-${actual}`;
      await assert.rejects(
        store.putStream(key, unevenStream(randomBuffer(actual)), { sizeBytes: declared }),
        SizeMismatchError,
        `${declared} declared, ${actual} sent`,
      );
      assert.equal(await store.stat(key), null);
    }
  });

  it("accepts an upload to a presigned PUT URL (fetch), then reads it back byte for byte", async () => {
    const data = randomBuffer(2 * MiB + 17);
    const key = "presigned/upload.bin";
    const up = await store.uploadUrl(key, {
      expiresInSeconds: 120,
      sizeBytes: data.length,
      contentType: "application/octet-stream",
    });
    assert.equal(up.method, "PUT");
    const url = new URL(up.url);
    assert.equal(url.searchParams.get("X-Amz-SignedHeaders"), "content-length;host");
    assert.equal(url.searchParams.get("X-Amz-Expires"), "120");
    assert.equal(url.searchParams.has("x-amz-checksum-crc32"), false);
    assert.deepEqual(up.headers, {
      "Content-Length": String(data.length),
      "Content-Type": "application/octet-stream",
    });

    const res = await fetch(up.url, { method: "PUT", headers: up.headers, body: Uint8Array.from(data) });
    assert.equal(res.status, 200, await res.text());
    const back = await readAll(await store.getStream(key));
    assert.equal(sha256(back), sha256(data));
    assert.ok(back.equals(data));
  });

  it("serves a presigned GET URL byte for byte, as an attachment when named", async () => {
    const data = randomBuffer(MiB + 3);
    const key = "presigned/download.bin";
    await store.putStream(key, Readable.from([data]));
    const url = await store.downloadUrl(key, { expiresInSeconds: 60, fileName: "modèle final.safetensors" });
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), String(data.length));
    assert.equal(
      res.headers.get("content-disposition"),
      `attachment; filename="mod_le final.safetensors"; filename*=UTF-8''mod%C3%A8le%20final.safetensors`,
    );
    const body = Buffer.from(await res.arrayBuffer());
    assert.ok(body.equals(data));

    const plain = await fetch(await store.downloadUrl(key, { expiresInSeconds: 60 }));
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get("content-disposition"), null);
    assert.ok(Buffer.from(await plain.arrayBuffer()).equals(data));
  });

  it("stats, deletes (idempotently), lists and deletes by prefix across pages", async () => {
    const keys = Array.from({ length: 23 }, (_, i) => `paged/${String(i).padStart(2, "0")}.bin`);
    await Promise.all(keys.map((key) => store.putStream(key, Readable.from([Buffer.from(key)]))));
    await store.putStream("pagedX/other.bin", Readable.from([Buffer.from("x")]));

    assert.deepEqual(await store.list("paged/"), keys); // 4 pages of 7
    assert.equal((await store.list("paged")).length, 24);
    assert.deepEqual(await store.list("nothing/"), []);
    assert.deepEqual(await store.stat("paged/03.bin"), { sizeBytes: "paged/03.bin".length });

    await store.delete("paged/03.bin");
    await store.delete("paged/03.bin");
    await store.delete("paged/never.bin");
    assert.equal(await store.stat("paged/03.bin"), null);
    await assert.rejects(store.getStream("paged/03.bin"), NotFoundError);
    await assert.rejects(store.downloadToFile("paged/03.bin", join(dir.path, "nope")), NotFoundError);

    assert.equal(await store.deletePrefix("paged/"), 22);
    assert.deepEqual(await store.list("paged/"), []);
    assert.deepEqual(await store.list("paged"), ["pagedX/other.bin"]);
    assert.equal(await store.deletePrefix("paged/"), 0);
    await assert.rejects(store.deletePrefix(""), InvalidKeyError);
    assert.equal(await store.deletePrefix("pagedX"), 1);
  });

  it("rejects invalid keys before any request", async () => {
    for (const key of ["", "../x", "a/../b", "/abs", "a\\b", "a\u0000b", "a//b", "x".repeat(1025)]) {
      await assert.rejects(store.putStream(key, Readable.from([Buffer.from("x")])), InvalidKeyError, key);
      await assert.rejects(
        store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: 1 }),
        InvalidKeyError,
        key,
      );
      await assert.rejects(store.downloadUrl(key, { expiresInSeconds: 60 }), InvalidKeyError, key);
      await assert.rejects(store.stat(key), InvalidKeyError, key);
      await assert.rejects(store.delete(key), InvalidKeyError, key);
    }
    await assert.rejects(store.list("../"), InvalidKeyError);
    await assert.rejects(
      store.uploadUrl("too/big", { expiresInSeconds: 60, sizeBytes: 6 * 1024 * MiB }),
      RangeError,
      "a presigned PUT is limited to 5 GiB",
    );
  });

  it("is what createObjectStore builds for an s3 config", () => {
    const built = createObjectStore({
      store: { kind: "s3", bucket: "b", region: "us-east-1", endpoint: s3.endpoint, forcePathStyle: true },
      publicBaseUrl: "http://unused",
      signingSecret: "unused",
    });
    assert.ok(built instanceof S3Store);
    assert.equal(built.kind, "s3");
    built.destroy();
  });
});
