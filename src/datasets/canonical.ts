/**
 * The canonical dataset: the one on-disk layout every ingest path writes and the trainer reads
 * (trainer/trapdoor_trainer/data.py `load_canonical`).
 *
 *   images.npy     NPY v1.0, descr '|u1', C order, shape (N, H, W, C)
 *   labels.npy     NPY v1.0, descr '<i8', shape (N,)
 *   manifest.json  {count, height, width, channels, numClasses, classNames,
 *                   sha256: {"images.npy", "labels.npy"}, sourceFormat, classHistogram}
 *
 * `CanonicalWriter` streams both arrays to disk chunk by chunk (the caller decides the chunk
 * size, nothing here holds a whole array), hashes them while writing, checks every label, and
 * publishes the directory atomically: it writes into a hidden temporary directory next to the
 * target and renames it into place only in `finish()`. `abort()` (or any error in `finish()`)
 * removes the temporary directory, so a failed ingest leaves nothing behind.
 */

import { createHash, type Hash } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import {
  type FileHandle,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { IngestError } from "./ingest-error.ts";
import type { DatasetFormat } from "./types.ts";

export interface CanonicalManifest {
  count: number;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  classNames: string[];
  sha256: Record<string, string>;
  sourceFormat: DatasetFormat;
  classHistogram: number[];
}

/**
 * A manifest as found on disk. Datasets written by the trainer's `poison` command carry extra
 * keys (`poison`, `asrFor`, a `poison_mask.npy` hash) and no `sourceFormat`/`classHistogram`.
 */
export interface StoredManifest extends Omit<CanonicalManifest, "sourceFormat" | "classHistogram"> {
  sourceFormat?: string;
  classHistogram?: number[];
  [key: string]: unknown;
}

export interface CanonicalShape {
  count: number;
  height: number;
  width: number;
  channels: number;
}

export interface CanonicalWriterOptions {
  /** When given, every label must be below it; otherwise numClasses = classNames.length or max(label) + 1. */
  numClasses?: number;
  /** Defaults to ["0", ..., "K-1"]; its length must equal numClasses. */
  classNames?: string[];
}

export const IMAGES_FILE = "images.npy";
export const LABELS_FILE = "labels.npy";
export const MANIFEST_FILE = "manifest.json";

/** Upper bound on classes: keeps the class histogram (and manifest) small whatever the labels say. */
export const MAX_CLASSES = 100_000;

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"

/**
 * An NPY v1.0 header (magic, version, length, dict literal) for a C-ordered array, padded with
 * spaces and a final newline to a multiple of 64 bytes exactly as numpy writes it, so
 * `np.load` (and mmap) accept it. The data follows immediately.
 */
export function npyHeader(descr: string, shape: readonly number[]): Buffer {
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw new RangeError(`invalid NPY dimension ${dim}`);
  }
  if (!/^[<>|][a-zA-Z]\d*$/.test(descr)) throw new RangeError(`invalid NPY descr ${JSON.stringify(descr)}`);
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const preamble = NPY_MAGIC.length + 2 + 2;
  const unpadded = preamble + dict.length + 1; // + "\n"
  const total = Math.ceil(unpadded / 64) * 64;
  const headerLength = total - preamble;
  if (headerLength > 0xffff) throw new RangeError("NPY v1.0 header longer than 65535 bytes");
  const out = Buffer.alloc(total, 0x20);
  NPY_MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(headerLength, 8);
  out.write(dict, preamble, "latin1");
  out[total - 1] = 0x0a;
  return out;
}

function checkDimension(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new IngestError("BAD_SHAPE", `${name} must be a positive integer, got ${value}`);
  }
}

/** Checks numClasses/classNames given by the user before any data is read. */
export function checkClassOptions(options: CanonicalWriterOptions, count?: number): void {
  const { numClasses, classNames } = options;
  if (numClasses !== undefined) {
    if (!Number.isSafeInteger(numClasses) || numClasses < 2 || numClasses > MAX_CLASSES) {
      throw new IngestError(
        "BAD_NUM_CLASSES",
        `numClasses must be an integer from 2 to ${MAX_CLASSES}, got ${numClasses}`,
      );
    }
    if (count !== undefined && numClasses > count) {
      throw new IngestError(
        "TOO_MANY_CLASSES",
        `numClasses is ${numClasses} but the dataset has only ${count} images; every class needs at least one image`,
      );
    }
  }
  if (classNames !== undefined) {
    if (!Array.isArray(classNames) || classNames.some((name) => typeof name !== "string")) {
      throw new IngestError("BAD_CLASS_NAMES", "classNames must be a list of strings");
    }
    if (numClasses !== undefined && classNames.length !== numClasses) {
      throw new IngestError(
        "BAD_CLASS_NAMES",
        `classNames has ${classNames.length} names but numClasses is ${numClasses}; give one name per class`,
      );
    }
  }
}

/**
 * Streams a canonical dataset into `outDir`. Usage:
 *
 *   const w = await CanonicalWriter.open(dir, { count, height, width, channels }, { numClasses });
 *   try { for (...) await w.appendLabels(chunk); for (...) await w.appendImages(rows);
 *         return await w.finish({ sourceFormat: "NPZ" }); }
 *   catch (e) { await w.abort(); throw e; }
 *
 * Images are uint8 N×H×W×C bytes in row order; a chunk may end anywhere (it need not hold
 * whole images). Labels are non-negative integers, checked as they arrive.
 */
export class CanonicalWriter {
  readonly outDir: string;
  readonly tempDir: string;
  readonly shape: CanonicalShape;
  private readonly options: CanonicalWriterOptions;
  private readonly imageBytes: number;
  private imagesFile: FileHandle | null;
  private labelsFile: FileHandle | null;
  private readonly imagesHash: Hash;
  private readonly labelsHash: Hash;
  private imageBytesWritten = 0;
  private labelsWritten = 0;
  private maxLabel = -1;
  private readonly histogram: number[] = [];
  private readonly labelLimit: number;
  private scratch: Buffer = Buffer.alloc(0);
  private state: "open" | "finished" | "aborted" = "open";

  private constructor(
    outDir: string,
    tempDir: string,
    shape: CanonicalShape,
    options: CanonicalWriterOptions,
    imagesFile: FileHandle,
    labelsFile: FileHandle,
  ) {
    this.outDir = outDir;
    this.tempDir = tempDir;
    this.shape = shape;
    this.options = options;
    this.imageBytes = shape.count * shape.height * shape.width * shape.channels;
    this.imagesFile = imagesFile;
    this.labelsFile = labelsFile;
    this.imagesHash = createHash("sha256");
    this.labelsHash = createHash("sha256");
    // Without numClasses a label >= count would need more classes than there are images.
    this.labelLimit = options.numClasses ?? options.classNames?.length ?? Math.min(shape.count, MAX_CLASSES);
  }

  /**
   * Creates the hidden temporary directory next to `outDir` (creating its parent if needed)
   * and writes both NPY headers. `outDir` must not exist yet.
   */
  static async open(
    outDir: string,
    shape: CanonicalShape,
    options: CanonicalWriterOptions = {},
  ): Promise<CanonicalWriter> {
    if (shape.count === 0) throw new IngestError("EMPTY", "the dataset has no images");
    checkDimension("count", shape.count);
    checkDimension("height", shape.height);
    checkDimension("width", shape.width);
    if (shape.channels !== 1 && shape.channels !== 3) {
      throw new IngestError("BAD_SHAPE", `channels must be 1 or 3, got ${shape.channels}`);
    }
    if (!Number.isSafeInteger(shape.count * shape.height * shape.width * shape.channels)) {
      throw new IngestError("TOO_LARGE", "the dataset is too large to index");
    }
    checkClassOptions(options, shape.count);
    const exists = await lstat(outDir).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return false;
        throw e;
      },
    );
    if (exists) throw new Error(`canonical output directory ${outDir} already exists`);
    const parent = dirname(outDir);
    await mkdir(parent, { recursive: true });
    const tempDir = await mkdtemp(join(parent, `.${basename(outDir)}.partial-`));
    let imagesFile: FileHandle | undefined;
    let labelsFile: FileHandle | undefined;
    try {
      const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;
      imagesFile = await open(join(tempDir, IMAGES_FILE), flags, 0o644);
      labelsFile = await open(join(tempDir, LABELS_FILE), flags, 0o644);
      const writer = new CanonicalWriter(outDir, tempDir, shape, options, imagesFile, labelsFile);
      await writer.writeTo(
        "images",
        npyHeader("|u1", [shape.count, shape.height, shape.width, shape.channels]),
      );
      await writer.writeTo("labels", npyHeader("<i8", [shape.count]));
      return writer;
    } catch (e) {
      await imagesFile?.close().catch(() => {});
      await labelsFile?.close().catch(() => {});
      await rm(tempDir, { recursive: true, force: true });
      throw e;
    }
  }

  private async writeTo(which: "images" | "labels", bytes: Uint8Array): Promise<void> {
    const file = which === "images" ? this.imagesFile : this.labelsFile;
    if (file === null) throw new Error("CanonicalWriter is closed");
    (which === "images" ? this.imagesHash : this.labelsHash).update(bytes);
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await file.write(bytes, offset, bytes.length - offset);
      offset += bytesWritten;
    }
  }

  private assertOpen(): void {
    if (this.state !== "open") throw new Error(`CanonicalWriter is ${this.state}`);
  }

  /**
   * Appends uint8 NHWC bytes. The chunk may be reused by the caller once the promise resolves.
   * Any error discards the dataset (as abort() does).
   */
  async appendImages(chunk: Uint8Array): Promise<void> {
    this.assertOpen();
    await this.orAbort(async () => {
      if (this.imageBytesWritten + chunk.length > this.imageBytes) {
        throw new IngestError(
          "COUNT_MISMATCH",
          `more image data than ${this.shape.count} images of ${this.shape.height}x${this.shape.width}x${this.shape.channels}`,
        );
      }
      await this.writeTo("images", chunk);
      this.imageBytesWritten += chunk.length;
    });
  }

  /** Appends labels (written as little-endian int64), checking each one. Any error discards the dataset. */
  async appendLabels(labels: BigInt64Array | ArrayLike<number>): Promise<void> {
    this.assertOpen();
    await this.orAbort(async () => {
      const n = labels.length;
      if (this.labelsWritten + n > this.shape.count) {
        throw new IngestError("COUNT_MISMATCH", `more labels than the ${this.shape.count} images`);
      }
      if (this.scratch.length < n * 8) this.scratch = Buffer.alloc(Math.max(n * 8, 4096));
      const out = this.scratch;
      const isBig = labels instanceof BigInt64Array;
      const hist = this.histogram;
      for (let i = 0; i < n; i++) {
        const value = isBig ? Number(labels[i]) : (labels as ArrayLike<number>)[i];
        if (value === undefined || !Number.isInteger(value) || value < 0 || value >= this.labelLimit) {
          throw this.labelError(value, this.labelsWritten + i);
        }
        while (hist.length <= value) hist.push(0);
        hist[value] = (hist[value] ?? 0) + 1;
        if (value > this.maxLabel) this.maxLabel = value;
        // value < MAX_CLASSES < 2^31: low word is the value, high word is zero.
        out.writeUInt32LE(value, i * 8);
        out.writeUInt32LE(0, i * 8 + 4);
      }
      await this.writeTo("labels", out.subarray(0, n * 8));
      this.labelsWritten += n;
    });
  }

  private async orAbort(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  private labelError(value: number | undefined, index: number): IngestError {
    const shown = value === undefined ? "missing" : String(value);
    if (value !== undefined && Number.isInteger(value) && value < 0) {
      return new IngestError("LABEL_OUT_OF_RANGE", `label ${index} is ${shown}; labels must be 0 or greater`);
    }
    if (value === undefined || !Number.isInteger(value)) {
      return new IngestError("LABEL_OUT_OF_RANGE", `label ${index} is ${shown}, not an integer`);
    }
    const { numClasses, classNames } = this.options;
    if (numClasses !== undefined) {
      return new IngestError(
        "LABEL_OUT_OF_RANGE",
        `label ${index} is ${shown} but numClasses is ${numClasses}; labels must lie in [0, ${numClasses})`,
      );
    }
    if (classNames !== undefined) {
      return new IngestError(
        "LABEL_OUT_OF_RANGE",
        `label ${index} is ${shown} but only ${classNames.length} class names were given`,
      );
    }
    if (value >= MAX_CLASSES && this.shape.count > MAX_CLASSES) {
      return new IngestError(
        "TOO_MANY_CLASSES",
        `label ${index} is ${shown}; at most ${MAX_CLASSES} classes are supported`,
      );
    }
    return new IngestError(
      "TOO_MANY_CLASSES",
      `label ${index} is ${shown}, which implies at least ${value + 1} classes but there are only ${this.shape.count} images; labels must be class indices 0..K-1`,
    );
  }

  /**
   * Checks that every image and label arrived, settles numClasses/classNames, writes
   * manifest.json and renames the temporary directory to `outDir`.
   * On failure the temporary directory is removed.
   */
  async finish(meta: { sourceFormat: DatasetFormat }): Promise<CanonicalManifest> {
    this.assertOpen();
    try {
      if (this.imageBytesWritten !== this.imageBytes) {
        throw new IngestError(
          "COUNT_MISMATCH",
          `expected ${this.imageBytes} bytes of images, got ${this.imageBytesWritten}`,
        );
      }
      if (this.labelsWritten !== this.shape.count) {
        throw new IngestError(
          "COUNT_MISMATCH",
          `expected ${this.shape.count} labels, got ${this.labelsWritten}`,
        );
      }
      const { numClasses: given, classNames: names } = this.options;
      const numClasses = given ?? names?.length ?? this.maxLabel + 1;
      if (numClasses < 2) {
        throw new IngestError(
          "BAD_NUM_CLASSES",
          `every label is ${this.maxLabel}, so only ${numClasses} class is implied; a classifier needs at least 2 (pass numClasses if some classes are absent from this set)`,
        );
      }
      if (numClasses > this.shape.count) {
        throw new IngestError(
          "TOO_MANY_CLASSES",
          `${numClasses} classes but only ${this.shape.count} images`,
        );
      }
      const classNames = names ?? Array.from({ length: numClasses }, (_, i) => String(i));
      if (classNames.length !== numClasses) {
        throw new IngestError(
          "BAD_CLASS_NAMES",
          `classNames has ${classNames.length} names but there are ${numClasses} classes`,
        );
      }
      const classHistogram = Array.from({ length: numClasses }, (_, i) => this.histogram[i] ?? 0);
      await this.closeFiles();
      const manifest: CanonicalManifest = {
        count: this.shape.count,
        height: this.shape.height,
        width: this.shape.width,
        channels: this.shape.channels,
        numClasses,
        classNames,
        sha256: {
          [IMAGES_FILE]: this.imagesHash.digest("hex"),
          [LABELS_FILE]: this.labelsHash.digest("hex"),
        },
        sourceFormat: meta.sourceFormat,
        classHistogram,
      };
      await writeFile(join(this.tempDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      await rename(this.tempDir, this.outDir);
      this.state = "finished";
      return manifest;
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  private async closeFiles(): Promise<void> {
    const files = [this.imagesFile, this.labelsFile];
    this.imagesFile = null;
    this.labelsFile = null;
    for (const file of files) await file?.close();
  }

  /** Discards everything written so far. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    await this.closeFiles().catch(() => {});
    await rm(this.tempDir, { recursive: true, force: true });
  }
}

function isCount(value: unknown, min: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min;
}

/**
 * Reads and checks `dir/manifest.json`. With `verify`, re-hashes every file named in `sha256`
 * (streamed) and fails with CORRUPT on a mismatch.
 */
export async function readManifest(dir: string, options: { verify?: boolean } = {}): Promise<StoredManifest> {
  const path = join(dir, MANIFEST_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    const why =
      (e as NodeJS.ErrnoException).code === "ENOENT" ? "is missing" : `is not valid JSON (${String(e)})`;
    throw new IngestError("BAD_MANIFEST", `${path} ${why}`);
  }
  const bad = (what: string) => new IngestError("BAD_MANIFEST", `${path}: ${what}`);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw bad("not a JSON object");
  const m = parsed as Record<string, unknown>;
  for (const key of ["count", "height", "width", "channels"] as const) {
    if (!isCount(m[key], 1)) throw bad(`${key} must be a positive integer`);
  }
  if (!isCount(m.numClasses, 1)) throw bad("numClasses must be a positive integer");
  const classNames = m.classNames ?? Array.from({ length: m.numClasses }, (_, i) => String(i));
  if (!Array.isArray(classNames) || !classNames.every((n) => typeof n === "string")) {
    throw bad("classNames must be a list of strings");
  }
  if (classNames.length !== m.numClasses) throw bad("classNames must have numClasses entries");
  const sha = m.sha256;
  if (
    typeof sha !== "object" ||
    sha === null ||
    !Object.entries(sha).every(
      ([k, v]) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v) && basename(k) === k,
    )
  ) {
    throw bad("sha256 must map file names to hex digests");
  }
  if (m.classHistogram !== undefined) {
    const h = m.classHistogram;
    if (!Array.isArray(h) || h.length !== m.numClasses || !h.every((v) => isCount(v, 0))) {
      throw bad("classHistogram must hold one count per class");
    }
  }
  if (m.sourceFormat !== undefined && typeof m.sourceFormat !== "string")
    throw bad("sourceFormat must be a string");
  if (options.verify) {
    for (const [name, expected] of Object.entries(sha as Record<string, string>)) {
      const actual = await sha256File(join(dir, name));
      if (actual !== expected) {
        throw new IngestError(
          "CORRUPT",
          `${name} does not match the sha256 in its manifest (corrupted or replaced)`,
        );
      }
    }
  }
  return { ...m, classNames } as StoredManifest;
}

/** sha256 of a file, streamed in 1 MiB reads. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await open(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  return hash.digest("hex");
}
