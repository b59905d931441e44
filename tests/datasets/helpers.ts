/**
 * Test fixtures for dataset ingest, written byte by byte (independently of the code under
 * test): NPY, IDX and zip/NPZ files, a small NPY reader, and the trainer's loader.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import type { CanonicalManifest } from "../../src/datasets/canonical.ts";
import { type IngestInput, ingest } from "../../src/datasets/ingest.ts";
import { IngestError } from "../../src/datasets/ingest-error.ts";
import type { DatasetFormat } from "../../src/datasets/types.ts";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const python = process.env.TRAPDOOR_PYTHON ?? "/usr/bin/python3";

const scratchDirs: string[] = [];
process.on("exit", () => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh empty directory, removed when the test process exits. */
export function scratch(prefix = "trapdoor-ingest-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}

/** Encodes numbers as a numpy-style descr: '|u1', '<i8', '>f4', ... */
export function encode(descr: string, values: ArrayLike<number>): Buffer {
  const m = /^([<>|])([uif])(\d)$/.exec(descr);
  if (m === null) throw new Error(`bad descr ${descr}`);
  const le = m[1] !== ">";
  const kind = m[2];
  const size = Number(m[3]);
  const out = Buffer.alloc(values.length * size);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    const at = i * size;
    if (kind === "f") {
      if (size === 4) view.setFloat32(at, v, le);
      else view.setFloat64(at, v, le);
    } else if (size === 1) {
      if (kind === "u") view.setUint8(at, v);
      else view.setInt8(at, v);
    } else if (size === 2) {
      if (kind === "u") view.setUint16(at, v, le);
      else view.setInt16(at, v, le);
    } else if (size === 4) {
      if (kind === "u") view.setUint32(at, v, le);
      else view.setInt32(at, v, le);
    } else if (kind === "u") view.setBigUint64(at, BigInt(v), le);
    else view.setBigInt64(at, BigInt(v), le);
  }
  return out;
}

export interface NpyOptions {
  fortranOrder?: boolean;
  /** 1 (uint16 header length) or 2 (uint32) */
  version?: 1 | 2;
  /** replaces the header dict text entirely */
  dict?: string;
  /** Python 2 style shape integers, e.g. (3L, 4L) */
  longs?: boolean;
}

export function npyHeaderBytes(descr: string, shape: number[], options: NpyOptions = {}): Buffer {
  const version = options.version ?? 1;
  const suffix = options.longs ? "L" : "";
  const dims = shape.map((d) => `${d}${suffix}`);
  const tuple = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(", ")})`;
  const dict =
    options.dict ??
    `{'descr': '${descr}', 'fortran_order': ${options.fortranOrder ? "True" : "False"}, 'shape': ${tuple}, }`;
  const fixed = 6 + 2 + (version === 1 ? 2 : 4);
  let padded = dict;
  while ((fixed + padded.length + 1) % 64 !== 0) padded += " ";
  padded += "\n";
  const head = Buffer.alloc(fixed);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  if (version === 1) head.writeUInt16LE(padded.length, 8);
  else head.writeUInt32LE(padded.length, 8);
  return Buffer.concat([head, Buffer.from(padded, "latin1")]);
}

export function npyBytes(descr: string, shape: number[], data: Uint8Array, options: NpyOptions = {}): Buffer {
  return Buffer.concat([npyHeaderBytes(descr, shape, options), data]);
}

/** NPY file from values in a descr. */
export function npy(
  descr: string,
  shape: number[],
  values: ArrayLike<number>,
  options: NpyOptions = {},
): Buffer {
  return npyBytes(descr, shape, encode(descr, values), options);
}

export const IDX_CODES = { u1: 0x08, i1: 0x09, i2: 0x0b, i4: 0x0c, f4: 0x0d, f8: 0x0e } as const;

/** IDX file: 00 00 type ndim, big-endian uint32 dims, big-endian data (`data` already encoded). */
export function idxBytes(code: number, shape: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * shape.length);
  head.set([0, 0, code, shape.length]);
  shape.forEach((d, i) => {
    head.writeUInt32BE(d, 4 + 4 * i);
  });
  return Buffer.concat([head, data]);
}

export interface ZipMember {
  name: string;
  data: Uint8Array;
  method?: "stored" | "deflate";
  /** lie about the uncompressed size (central directory and local header) */
  declaredSize?: number;
  /** lie about the CRC */
  crc?: number;
  /** raw compression method number, overriding `method` in the headers */
  methodCode?: number;
  /** Unix mode (type and permission bits), recorded as made on Unix; e.g. 0o120777 for a symlink */
  unixMode?: number;
}

/** A zip archive (no zip64, no data descriptors), as np.savez writes small ones. */
export function zipBytes(members: ZipMember[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const name = Buffer.from(m.name, "utf8");
    const deflate = m.method === "deflate";
    const body = deflate ? zlib.deflateRawSync(m.data) : Buffer.from(m.data);
    const crc = m.crc ?? zlib.crc32(m.data);
    const method = m.methodCode ?? (deflate ? 8 : 0);
    const size = m.declaredSize ?? m.data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x800, 6); // UTF-8 names
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(0x21, 12); // date 1980-01-01
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(m.unixMode === undefined ? 20 : (3 << 8) | 20, 4); // made by (3 = Unix)
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc >>> 0, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    if (m.unixMode !== undefined) central.writeUInt32LE((m.unixMode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/** Writes `files` (name → bytes) into `dir`; returns name → path. */
export function writeFiles(dir: string, files: Record<string, Uint8Array>): Record<string, string> {
  const paths: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    paths[name] = path;
  }
  return paths;
}

/** A tiny NPY reader for checking outputs (v1.0 only). */
export function readNpy(path: string): { descr: string; fortran: boolean; shape: number[]; data: Buffer } {
  const bytes = readFileSync(path);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const length = bytes.readUInt16LE(8);
  assert.equal((10 + length) % 64, 0, "header padded to 64 bytes");
  const header = bytes.subarray(10, 10 + length).toString("latin1");
  assert.ok(header.endsWith("\n"));
  const m = /^\{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \(([\d, ]*)\), \} *\n$/.exec(
    header,
  );
  assert.ok(m, `unexpected header ${JSON.stringify(header)}`);
  const shape = (m[3] as string)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map(Number);
  return { descr: m[1] as string, fortran: m[2] === "True", shape, data: bytes.subarray(10 + length) };
}

/** int64 little-endian labels.npy data → numbers */
export function int64s(data: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < data.length; i += 8) out.push(Number(data.readBigInt64LE(i)));
  return out;
}

/** Deterministic pseudo-random bytes. */
export function pattern(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Reference NCHW → NHWC, element by element. */
export function nchwToNhwc(src: ArrayLike<number>, n: number, c: number, h: number, w: number): number[] {
  const out = new Array<number>(n * c * h * w);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) {
          out[((i * h + y) * w + x) * c + k] = src[((i * c + k) * h + y) * w + x] as number;
        }
  return out;
}

/** Loads a canonical dataset with the trainer's own loader; returns "(N, H, W, C) labelSum". */
export function loadInTrainer(dir: string): string {
  const code =
    "import sys; sys.path.insert(0, 'trainer'); from trapdoor_trainer.data import load_canonical; " +
    "d = load_canonical(sys.argv[1]); print(d.images.shape, int(d.labels.sum()))";
  const run = spawnSync(python, ["-c", code, dir], { cwd: repoRoot, encoding: "utf8", timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout.trim();
}

/** Runs a Python snippet (numpy available) with argv; returns stdout. */
export function runPython(code: string, ...args: string[]): string {
  const run = spawnSync(python, ["-c", code, ...args], { cwd: repoRoot, encoding: "utf8", timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

/** Asserts the promise fails with an IngestError of `code`; returns it. */
export async function rejectsWith(promise: Promise<unknown>, code: string): Promise<IngestError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof IngestError, `expected IngestError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.length > 10);
    return e;
  }
  assert.fail(`expected IngestError ${code}, but it succeeded`);
}

/** Lists a directory (to check that nothing, not even a temporary directory, was left). */
export function listing(dir: string): string[] {
  return readdirSync(dir).sort();
}

export interface Ingested {
  manifest: CanonicalManifest;
  out: string;
  /** the directory `out` lives in */
  parent: string;
}

/**
 * Writes `parts` (part name → file bytes) under a scratch directory, ingests them into
 * `<scratch>/result/out` and returns the manifest. `fileNames` renames part files on disk.
 */
export async function ingestBytes(
  format: DatasetFormat,
  parts: Record<string, Uint8Array>,
  options: Omit<IngestInput, "format" | "parts"> & { fileNames?: Record<string, string> } = {},
): Promise<Ingested> {
  const root = scratch();
  const paths: Record<string, string> = {};
  for (const [part, bytes] of Object.entries(parts)) {
    const path = join(root, options.fileNames?.[part] ?? `${part}.bin`);
    writeFileSync(path, bytes);
    paths[part] = path;
  }
  const parent = join(root, "result");
  mkdirSync(parent);
  const out = join(parent, "out");
  const { fileNames: _, ...rest } = options;
  const manifest = await ingest({ format, parts: paths, ...rest }, out);
  return { manifest, out, parent };
}

/** Ingests and expects the IngestError `code`, with nothing left where the output would go. */
export async function ingestFails(
  format: DatasetFormat,
  parts: Record<string, Uint8Array>,
  code: string,
  options: Omit<IngestInput, "format" | "parts"> & { fileNames?: Record<string, string> } = {},
): Promise<IngestError> {
  let parent = "";
  const error = await rejectsWith(
    (async () => {
      const root = scratch();
      parent = join(root, "result");
      mkdirSync(parent);
      const paths: Record<string, string> = {};
      for (const [part, bytes] of Object.entries(parts)) {
        const path = join(root, options.fileNames?.[part] ?? `${part}.bin`);
        writeFileSync(path, bytes);
        paths[part] = path;
      }
      const { fileNames: _, ...rest } = options;
      return ingest({ format, parts: paths, ...rest }, join(parent, "out"));
    })(),
    code,
  );
  assert.deepEqual(listing(parent), [], `ingest left ${listing(parent).join(", ")} behind after ${code}`);
  return error;
}

/** Checks a canonical directory against expected NHWC pixels and labels, byte for byte. */
export function assertCanonical(
  out: string,
  shape: [number, number, number, number],
  pixels: ArrayLike<number>,
  labels: number[],
): void {
  assert.deepEqual(listing(out), ["images.npy", "labels.npy", "manifest.json"]);
  const images = readNpy(join(out, "images.npy"));
  assert.equal(images.descr, "|u1");
  assert.equal(images.fortran, false);
  assert.deepEqual(images.shape, shape);
  assert.equal(images.data.length, pixels.length);
  assert.ok(Buffer.from(Array.from(pixels)).equals(images.data), "pixels differ");
  const stored = readNpy(join(out, "labels.npy"));
  assert.equal(stored.descr, "<i8");
  assert.deepEqual(stored.shape, [labels.length]);
  assert.deepEqual(int64s(stored.data), labels);
  const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
  for (const file of ["images.npy", "labels.npy"]) {
    assert.equal(
      manifest.sha256[file],
      createHash("sha256")
        .update(readFileSync(join(out, file)))
        .digest("hex"),
    );
  }
}
