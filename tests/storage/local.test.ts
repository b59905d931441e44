import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it, mock } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import express from "express";
import request from "supertest";
import { createObjectStore } from "../../src/storage/index.ts";
import { localStoreRouter } from "../../src/storage/local-router.ts";
import { LocalStore } from "../../src/storage/local-store.ts";
import { InvalidKeyError, NotFoundError, SizeMismatchError } from "../../src/storage/object-store.ts";
import { randomBuffer, readAll, sha256, tempDir, unevenStream } from "./helpers.ts";

const BASE = "http://trapdoor.test";
const MiB = 1024 * 1024;

/** Path and query of a signed URL, for supertest; checks that it points at the router. */
function pathOf(url: string): string {
  const u = new URL(url);
  assert.equal(u.origin, BASE);
  assert.ok(u.pathname.startsWith("/objects/"), u.pathname);
  return u.pathname + u.search;
}

function withParam(url: string, name: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return pathOf(u.toString());
}

/** A supertest parser that keeps the body as a Buffer. */
function binary(res: unknown, done: (err: Error | null, body: Buffer) => void): void {
  readAll(res as NodeJS.ReadableStream).then(
    (body) => done(null, body),
    (err: Error) => done(err, Buffer.alloc(0)),
  );
}

/** Everything under a directory, as relative paths (files only). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

describe("LocalStore through its signed-URL router", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let root: string;
  let store: LocalStore;
  let app: express.Express;

  before(async () => {
    dir = await tempDir("local");
    root = join(dir.path, "store");
    store = new LocalStore({
      root,
      publicBaseUrl: `${BASE}/`,
      signingSecret: randomBytes(32).toString("hex"),
      maxUploadBytes: 64 * MiB,
    });
    app = express();
    app.use("/objects", localStoreRouter(store));
  });

  after(async () => {
    mock.timers.reset();
    await dir.remove();
  });

  it("round-trips a few MiB byte for byte: signed PUT, signed GET, getStream", async () => {
    const data = randomBuffer(3 * MiB + 12_345);
    const key = "tenants/t1/datasets/d1/raw/train.bin";
    const up = await store.uploadUrl(key, {
      expiresInSeconds: 60,
      sizeBytes: data.length,
      contentType: "application/octet-stream",
    });
    assert.equal(up.method, "PUT");
    assert.equal(up.headers["Content-Length"], String(data.length));
    const put = await request(app).put(pathOf(up.url)).set(up.headers).send(data).expect(200);
    assert.deepEqual(put.body, { sizeBytes: data.length, sha256: sha256(data) });
    assert.deepEqual(await store.stat(key), { sizeBytes: data.length });

    const url = await store.downloadUrl(key, { expiresInSeconds: 60, fileName: "train set (1).bin" });
    const got = await request(app).get(pathOf(url)).buffer(true).parse(binary).expect(200);
    assert.equal(got.headers["content-length"], String(data.length));
    assert.equal(got.headers["content-type"], "application/octet-stream");
    assert.equal(
      got.headers["content-disposition"],
      `attachment; filename="train set (1).bin"; filename*=UTF-8''train%20set%20%281%29.bin`,
    );
    assert.equal(sha256(got.body as Buffer), sha256(data));
    assert.ok((got.body as Buffer).equals(data));

    const plain = await store.downloadUrl(key, { expiresInSeconds: 60 });
    const head = await request(app).head(pathOf(plain)).expect(200);
    assert.equal(head.headers["content-length"], String(data.length));
    assert.match(head.headers["content-disposition"] ?? "", /^attachment; filename="train\.bin"/);

    assert.ok((await readAll(await store.getStream(key))).equals(data));
    assert.deepEqual(await filesUnder(join(root, "tmp")), [], "no partial files left behind");
  });

  it("refuses expired URLs with 403", async () => {
    const key = "expiry/x.bin";
    await store.putStream(key, Readable.from([Buffer.from("abc")]));
    const up = await store.uploadUrl(key, { expiresInSeconds: 30, sizeBytes: 3 });
    const down = await store.downloadUrl(key, { expiresInSeconds: 30 });
    mock.timers.enable({ apis: ["Date"], now: Date.now() + 31_000 });
    try {
      const put = await request(app).put(pathOf(up.url)).send(Buffer.from("xyz")).expect(403);
      assert.match(put.body.error, /expired/);
      await request(app).get(pathOf(down)).expect(403);
    } finally {
      mock.timers.reset();
    }
    assert.equal((await readAll(await store.getStream(key))).toString(), "abc");
  });

  it("refuses tampered signatures and parameters with 403", async () => {
    const key = "tamper/x.bin";
    const body = Buffer.from("0123456789");
    const up = await store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: body.length });
    const sig = new URL(up.url).searchParams.get("sig") ?? "";
    const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    await request(app)
      .put(withParam(up.url, "sig", flipped))
      .send(body)
      .expect(403);
    await request(app)
      .put(withParam(up.url, "sig", ""))
      .send(body)
      .expect(403);
    await request(app)
      .put(withParam(up.url, "size", "11"))
      .send(Buffer.alloc(11))
      .expect(403);
    const later = String(Number(new URL(up.url).searchParams.get("expires")) + 3600);
    await request(app)
      .put(withParam(up.url, "expires", later))
      .send(body)
      .expect(403);
    const otherKey = pathOf(up.url).replace("/tamper/x.bin", "/tamper/y.bin");
    await request(app).put(otherKey).send(body).expect(403);
    assert.deepEqual(await store.list("tamper/"), []);

    await store.putStream(key, Readable.from([body]));
    const down = await store.downloadUrl(key, { expiresInSeconds: 60, fileName: "x.bin" });
    await request(app)
      .get(withParam(down, "name", "evil.exe"))
      .expect(403);
    const downSig = new URL(down).searchParams.get("sig") ?? "";
    await request(app)
      .get(withParam(down, "sig", `${downSig.slice(0, -1)}${downSig.endsWith("A") ? "B" : "A"}`))
      .expect(403);
    await request(app).get(pathOf(down)).expect(200);
    await request(app).get("/objects/tamper/x.bin").expect(403);
  });

  it("refuses a body longer or shorter than the signed size with 400 and stores nothing", async () => {
    const key = "size/x.bin";
    const up = await store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: 1000 });
    await request(app).put(pathOf(up.url)).send(randomBuffer(999)).expect(400);
    await request(app).put(pathOf(up.url)).send(randomBuffer(1001)).expect(400);
    assert.equal(await store.stat(key), null);

    // The same without Content-Length (chunked), over a real socket: counted while streaming.
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    try {
      const { port } = server.address() as AddressInfo;
      const u = new URL(up.url);
      const target = `http://127.0.0.1:${port}${u.pathname}${u.search}`;
      for (const size of [400_000, 999, 1001]) {
        const res = await fetch(target, {
          method: "PUT",
          body: Readable.toWeb(unevenStream(randomBuffer(size), 4096)) as ReadableStream,
          duplex: "half",
        } as RequestInit);
        assert.equal(res.status, 400, `chunked body of ${size} bytes`);
        await res.arrayBuffer();
      }
      const ok = randomBuffer(1000);
      const res = await fetch(target, {
        method: "PUT",
        body: Readable.toWeb(unevenStream(ok, 97)) as ReadableStream,
        duplex: "half",
      } as RequestInit);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { sha256: string }).sha256, sha256(ok));
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    await store.delete(key);
    assert.equal(await store.stat(key), null);
    assert.deepEqual(await filesUnder(join(root, "tmp")), []);

    await assert.rejects(
      store.putStream("size/y.bin", Readable.from([Buffer.alloc(10)]), { sizeBytes: 11 }),
      SizeMismatchError,
    );
    await assert.rejects(
      store.putStream("size/y.bin", Readable.from([Buffer.alloc(12)]), { sizeBytes: 11 }),
      SizeMismatchError,
    );
    assert.equal(await store.stat("size/y.bin"), null);
    await assert.rejects(
      store.uploadUrl("size/z.bin", { expiresInSeconds: 60, sizeBytes: 65 * MiB }),
      RangeError,
    );
  });

  it("leaves nothing behind when the client disconnects mid-upload", async () => {
    const key = "abort/x.bin";
    const up = await store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: 4 * MiB });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    try {
      const { port } = server.address() as AddressInfo;
      const u = new URL(up.url);
      const req = httpRequest({
        host: "127.0.0.1",
        port,
        method: "PUT",
        path: `${u.pathname}${u.search}`,
        headers: { "Content-Length": String(4 * MiB) },
      });
      req.on("error", () => undefined); // the abort below
      req.write(randomBuffer(MiB));
      // Wait until the partial file exists, then cut the connection.
      const tmp = join(root, "tmp");
      for (let i = 0; i < 200 && (await filesUnder(tmp)).length === 0; i++) await sleep(10);
      assert.equal((await filesUnder(tmp)).length, 1, "the upload is in progress");
      req.destroy();
      for (let i = 0; i < 200 && (await filesUnder(tmp)).length > 0; i++) await sleep(10);
      assert.deepEqual(await filesUnder(tmp), [], "the partial file is removed");
      assert.equal(await store.stat(key), null);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("lets a fresh signature overwrite an object, never a replayed one", async () => {
    const key = "replay/x.bin";
    const first = Buffer.from("first version");
    const second = Buffer.from("second version!");
    const up1 = await store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: first.length });
    await request(app).put(pathOf(up1.url)).send(first).expect(200);
    const again = await request(app).put(pathOf(up1.url)).send(first).expect(409);
    assert.match(again.body.error, /after this upload URL was issued/);

    // A URL issued before a later write is stale too.
    const early = await store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: second.length });
    await store.putStream(key, Readable.from([first]));
    await request(app).put(pathOf(early.url)).send(second).expect(409);

    const up2 = await store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: second.length });
    await request(app).put(pathOf(up2.url)).send(second).expect(200);
    assert.equal((await readAll(await store.getStream(key))).toString(), second.toString());
  });

  it("rejects keys that could leave the root, in the API and over HTTP", async () => {
    const bad = [
      "",
      "../escape",
      "a/../../escape",
      "a/./b",
      "a//b",
      "a/",
      "/etc/passwd",
      "a\\..\\escape",
      "a\u0000b",
      "..",
      "x".repeat(1025),
      "é".repeat(513), // 1026 bytes
    ];
    for (const key of bad) {
      await assert.rejects(store.putStream(key, Readable.from([Buffer.from("x")])), InvalidKeyError, key);
      await assert.rejects(
        store.uploadUrl(key, { expiresInSeconds: 60, sizeBytes: 1 }),
        InvalidKeyError,
        key,
      );
      await assert.rejects(store.downloadUrl(key, { expiresInSeconds: 60 }), InvalidKeyError, key);
      await assert.rejects(store.stat(key), InvalidKeyError, key);
      await assert.rejects(store.getStream(key), InvalidKeyError, key);
    }
    await assert.rejects(store.list("../"), InvalidKeyError);
    await assert.rejects(store.deletePrefix("a/../.."), InvalidKeyError);
    const longest = Array.from({ length: 5 }, () => "x".repeat(204)).join("/"); // 1024 bytes
    assert.equal(await store.stat(longest), null, "1024 bytes is allowed");
    await store.putStream(longest, Readable.from([Buffer.from("x")]));
    assert.deepEqual(await store.stat(longest), { sizeBytes: 1 });
    await store.delete(longest);
    await assert.rejects(
      store.stat("x".repeat(256)),
      InvalidKeyError,
      "a file name the local store cannot hold",
    );

    // A valid signature for "t/escape" reused on encoded traversal paths.
    const up = await store.uploadUrl("t/escape", { expiresInSeconds: 60, sizeBytes: 1 });
    const query = new URL(up.url).search;
    const paths = [
      "/objects/..%2F..%2Fescape",
      "/objects/t/..%2F..%2F..%2Fescape",
      "/objects/%2e%2e/%2e%2e/escape",
      "/objects/t/%2E%2E%2F%2E%2E%2Fescape",
      "/objects/t%5C..%5C..%5Cescape",
      "/objects/t/%00escape",
      "/objects/t/%E0%A4%A",
      "/objects/%2Fetc%2Fescape",
      "/objects/t/../../escape",
    ];
    for (const path of paths) {
      await request(app).put(`${path}${query}`).send(Buffer.from("x")).expect(400);
      await request(app).get(`${path}${query}`).expect(400);
    }
    assert.equal(existsSync(join(dir.path, "escape")), false);
    assert.equal(existsSync(join(root, "escape")), false);
    assert.ok(!(await filesUnder(dir.path)).some((p) => p.endsWith("escape")));
  });

  it("lists by prefix, deletes by prefix and single keys (idempotently)", async () => {
    const keys = ["lp/a/1", "lp/a/2", "lp/b/3", "lpq/4", "lp/é", "lp/Z"];
    for (const key of keys) await store.putStream(key, Readable.from([Buffer.from(key)]));
    assert.deepEqual(await store.list("lp/"), ["lp/Z", "lp/a/1", "lp/a/2", "lp/b/3", "lp/é"]);
    assert.deepEqual(await store.list("lp"), ["lp/Z", "lp/a/1", "lp/a/2", "lp/b/3", "lp/é", "lpq/4"]);
    assert.deepEqual(await store.list("lp/a"), ["lp/a/1", "lp/a/2"]);
    assert.deepEqual(await store.list("lp/a/1"), ["lp/a/1"]);
    assert.deepEqual(await store.list("nothing/"), []);
    assert.ok((await store.list("")).includes("lpq/4"));

    assert.equal(await store.deletePrefix("lp/a/"), 2);
    assert.equal(existsSync(join(root, "objects", "lp", "a")), false, "empty directories are pruned");
    assert.equal(await store.deletePrefix("lp/a/"), 0);
    assert.deepEqual(await store.list("lp/"), ["lp/Z", "lp/b/3", "lp/é"]);
    await assert.rejects(store.deletePrefix(""), InvalidKeyError);

    await store.delete("lp/b/3");
    await store.delete("lp/b/3");
    await store.delete("lp/never");
    await store.delete("lp"); // a "directory", not an object: nothing happens
    assert.equal(await store.stat("lp/b/3"), null);
    assert.equal(await store.deletePrefix("lp"), 3);
    assert.deepEqual(await store.list("lp"), []);
  });

  it("putFile, downloadToFile, getStream on a missing key, and key/directory conflicts", async () => {
    const data = randomBuffer(MiB + 7);
    const src = join(dir.path, "src.bin");
    await writeFile(src, data);
    const stored = await store.putFile("files/a.bin", src);
    assert.deepEqual(stored, { sizeBytes: data.length, sha256: sha256(data) });
    const dst = join(dir.path, "out", "nested", "a.bin");
    assert.deepEqual(await store.downloadToFile("files/a.bin", dst), stored);
    assert.ok((await readFile(dst)).equals(data));
    assert.deepEqual(await readdir(join(dir.path, "out", "nested")), ["a.bin"]);

    const streamed = await store.putStream("files/b.bin", unevenStream(data));
    assert.deepEqual(streamed, stored);

    await assert.rejects(store.getStream("files/missing"), NotFoundError);
    await assert.rejects(store.downloadToFile("files/missing", join(dir.path, "x")), NotFoundError);
    assert.equal(await store.stat("files"), null);

    await assert.rejects(
      store.putStream("files/a.bin/c", Readable.from([Buffer.from("x")])),
      InvalidKeyError,
    );
    await assert.rejects(store.putStream("files", Readable.from([Buffer.from("x")])), InvalidKeyError);
    assert.deepEqual(await filesUnder(join(root, "tmp")), []);
    assert.equal(await store.deletePrefix("files/"), 2);
  });

  it("is what createObjectStore builds for a local config", () => {
    const built = createObjectStore({
      store: { kind: "local", root: join(dir.path, "other") },
      publicBaseUrl: BASE,
      signingSecret: "0123456789abcdef",
    });
    assert.ok(built instanceof LocalStore);
    assert.equal(built.kind, "local");
    assert.throws(
      () =>
        createObjectStore({
          store: { kind: "local", root: dir.path },
          publicBaseUrl: BASE,
          signingSecret: "short",
        }),
      /signingSecret/,
    );
  });
});
