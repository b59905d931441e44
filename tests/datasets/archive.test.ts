import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { archiveOf, pngBytes, type TarEntry, tarBytes } from "./archives.ts";
import { ingestBytes, ingestFails, zipBytes } from "./helpers.ts";

/** Hostile or broken archives: refused whole with a typed reason, nothing left behind (ingestFails checks). */

const image = (v: number) => pngBytes(2, 2, 1, [v, v, v, v]);
const good: TarEntry[] = [
  { name: "a/1.png", data: image(1) },
  { name: "b/1.png", data: image(2) },
];
const tarOf = (extra: TarEntry[], endBlocks = 2) => tarBytes([...good, ...extra], endBlocks);
const fails = (archive: Uint8Array, code: string, options = {}) =>
  ingestFails("CLASS_FOLDERS", { archive }, code, options);

describe("archive safety (tar, tar.gz, zip)", () => {
  it("the well-formed fixtures are accepted, so each rejection below is about its one defect", async () => {
    for (const archive of [
      tarOf([]),
      gzipSync(tarOf([])),
      archiveOf(
        "zip",
        good.map((e) => [e.name, e.data as Uint8Array]),
      ),
    ]) {
      const { manifest } = await ingestBytes("CLASS_FOLDERS", { archive });
      assert.equal(manifest.count, 2);
    }
  });

  it("UNSAFE_PATH: '..', absolute paths, backslashes, in tar and zip", async () => {
    for (const name of ["../a/evil.png", "a/../../evil.png", "/etc/a/evil.png", "a\\..\\evil.png"]) {
      const error = await fails(tarOf([{ name, data: image(3) }]), "UNSAFE_PATH");
      assert.match(error.message, /member/);
      await fails(gzipSync(tarOf([{ name, data: image(3) }])), "UNSAFE_PATH");
      await fails(
        zipBytes([
          { name: "a/1.png", data: image(1) },
          { name, data: image(3) },
        ]),
        "UNSAFE_PATH",
      );
    }
    await fails(zipBytes([{ name: "C:/a/evil.png", data: image(3) }]), "UNSAFE_PATH");
  });

  it("UNSAFE_ENTRY: symlinks, hard links, devices and FIFOs in tar; symlinks and devices in zip", async () => {
    for (const entry of [
      { name: "a/link.png", type: "symlink", linkname: "/etc/passwd" },
      { name: "a/hard.png", type: "hardlink", linkname: "b/1.png" },
      { name: "a/tty", type: "char-device" },
      { name: "a/disk", type: "block-device" },
      { name: "a/pipe", type: "fifo" },
    ] as TarEntry[]) {
      const error = await fails(tarOf([entry]), "UNSAFE_ENTRY");
      assert.match(error.message, /only regular files and folders/);
    }
    await fails(gzipSync(tarOf([{ name: "x", type: "symlink", linkname: "../../etc" }])), "UNSAFE_ENTRY");
    const zipLink = zipBytes([
      { name: "a/1.png", data: image(1), unixMode: 0o100644 },
      { name: "b/1.png", data: Buffer.from("/etc/passwd"), unixMode: 0o120777 },
    ]);
    const error = await fails(zipLink, "UNSAFE_ENTRY");
    assert.match(error.message, /symbolic link/);
    await fails(zipBytes([{ name: "a/dev", data: new Uint8Array(0), unixMode: 0o020644 }]), "UNSAFE_ENTRY");
    // regular files and folders made on Unix are fine
    const { manifest } = await ingestBytes("CLASS_FOLDERS", {
      archive: zipBytes([
        { name: "a/", data: new Uint8Array(0), unixMode: 0o040755 },
        { name: "a/1.png", data: image(1), unixMode: 0o100644 },
        { name: "b/1.png", data: image(2), unixMode: 0o100600 },
      ]),
    });
    assert.equal(manifest.count, 2);
  });

  it("TOO_LARGE: zip bombs by compression ratio (zip, tar.gz) and by total expanded size", async () => {
    const zeros = Buffer.alloc(20 << 20);
    const zipBomb = zipBytes([
      { name: "a/1.png", data: image(1) },
      { name: "a/big.png", data: zeros, method: "deflate" },
    ]);
    assert.ok(zipBomb.length < 100_000);
    const error = await fails(zipBomb, "TOO_LARGE");
    assert.match(error.message, /expands more than 100x/);
    const tarBomb = gzipSync(tarOf([{ name: "a/big.png", data: zeros }]));
    await fails(tarBomb, "TOO_LARGE");
    // a lower ratio cap, and a cap on the total, apply to honest archives too
    await fails(tarOf([]), "TOO_LARGE", { maxBytes: 2048 });
    await fails(
      archiveOf("zip", [
        ["a/1.png", image(1)],
        ["b/1.png", image(2)],
      ]),
      "TOO_LARGE",
      { maxBytes: 100 },
    );
  });

  it("a zip member that inflates past its declared size, or fails its CRC, is CORRUPT", async () => {
    const lying = zipBytes([
      { name: "a/1.png", data: image(1) },
      { name: "b/1.png", data: image(2), method: "deflate", declaredSize: 20 },
    ]);
    await fails(lying, "CORRUPT");
    await fails(
      zipBytes([
        { name: "a/1.png", data: image(1) },
        { name: "b/1.png", data: image(2), crc: 1234 },
      ]),
      "CORRUPT",
    );
  });

  it("TRUNCATED: gzip cut short, tar cut inside a member or without its end blocks, zip without its directory", async () => {
    const gz = gzipSync(tarOf([]));
    await fails(gz.subarray(0, gz.length - 12), "TRUNCATED");
    await fails(gz.subarray(0, 40), "TRUNCATED");
    const tar = tarOf([]);
    await fails(tar.subarray(0, 512 + 30), "TRUNCATED");
    const error = await fails(tarOf([], 0), "TRUNCATED");
    assert.match(error.message, /end-of-archive/);
    const zip = archiveOf("zip", [
      ["a/1.png", image(1)],
      ["b/1.png", image(2)],
    ]);
    await fails(zip.subarray(0, zip.length - 30), "TRUNCATED");
  });

  it("BAD_ARCHIVE: not an archive at all, or a gzip of something that is not a tar", async () => {
    const error = await fails(Buffer.from("just some text, not an archive"), "BAD_ARCHIVE");
    assert.match(error.message, /not a tar, tar.gz or zip/);
    await fails(gzipSync(Buffer.alloc(4096, 7)), "BAD_ARCHIVE");
    await fails(zipBytes([{ name: "a/1.png", data: image(1), methodCode: 12 }]), "BAD_ARCHIVE");
  });

  it("no file descriptor outlives an archive ingest, whichever way it ends", {
    skip: !existsSync("/proc/self/fd") && "needs /proc",
  }, async () => {
    const fds = () => readdirSync("/proc/self/fd").length;
    // Earlier tests' handles may still be closing: let them settle first. A leak is a descriptor
    // more than before; one fewer (a handle of an earlier test closed meanwhile) is none.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = fds();
    const files = good.map((e): [string, Uint8Array] => [e.name, e.data as Uint8Array]);
    for (const kind of ["tar", "tar.gz", "zip"] as const) {
      await ingestBytes("CLASS_FOLDERS", { archive: archiveOf(kind, files) });
      // fails in the planning pass, in the decoding pass, and in the canonical writer
      await fails(archiveOf(kind, [...files, ["../x/1.png", image(3)]]), "UNSAFE_PATH");
      await fails(archiveOf(kind, [...files, ["b/2.png", Buffer.from("not an image")]]), "UNDECODABLE_IMAGE");
      await fails(archiveOf(kind, [...files, ["b/2.png", pngBytes(3, 1, 1, [1, 2, 3])]]), "MIXED_SIZES");
    }
    await fails(gzipSync(tarOf([])).subarray(0, 60), "TRUNCATED");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(fds() <= before, `${fds() - before} descriptor(s) outlived the ingests`);
  });
});
