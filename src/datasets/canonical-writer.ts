/**
 * `CanonicalWriter` streams both arrays of a canonical dataset (canonical.ts) to disk chunk by
 * chunk (the caller decides the chunk size, nothing here holds a whole array), hashes them while
 * writing, checks every label, and publishes the directory atomically: it writes into a hidden
 * temporary directory next to the target and renames it into place only in `finish()`.
 * `abort()` (or any error in `finish()`) removes the temporary directory, so a failed ingest
 * leaves nothing behind.
 *
 * The file is longer than most because the class is kept whole: its label checks, byte counts,
 * open files and temporary directory are one state that every method reads.
 */

import { createHash, type Hash } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { type FileHandle, lstat, mkdir, mkdtemp, open, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { decodedBytes } from "../input-limits.ts";
import {
  type CanonicalManifest,
  type CanonicalShape,
  IMAGES_FILE,
  LABELS_FILE,
  MANIFEST_FILE,
  MAX_CLASSES,
} from "./canonical.ts";
import { IngestError } from "./ingest-error.ts";
import { npyHeader } from "./npy-write.ts";
import type { DatasetFormat, FormatLimits } from "./types.ts";

export interface CanonicalWriterOptions {
  /** When given, every label must be below it; otherwise numClasses = classNames.length or max(label) + 1. */
  numClasses?: number;
  /** Defaults to ["0", ..., "K-1"]; its length must equal numClasses. */
  classNames?: string[];
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
 * The whole decoded dataset against the deployment's cap and the tenant's room, before anything
 * is written: a small archive that decodes (or resizes) into gigabytes stops here.
 */
export function checkDecodedSize(
  shape: CanonicalShape,
  limits: Pick<FormatLimits, "maxDecodedBytes" | "quotaBytesLeft">,
): void {
  const bytes = decodedBytes(shape);
  const what = `decoded, the dataset takes ${bytes} bytes (${shape.count} images of ${shape.height}x${shape.width}x${shape.channels})`;
  if (limits.maxDecodedBytes !== undefined && bytes > limits.maxDecodedBytes)
    throw new IngestError(
      "TOO_LARGE",
      `${what}; the limit is ${limits.maxDecodedBytes} (resize the images or split the dataset)`,
    );
  if (limits.quotaBytesLeft !== undefined && bytes > limits.quotaBytesLeft)
    throw new IngestError(
      "QUOTA_EXCEEDED",
      `${what}; your quota has ${limits.quotaBytesLeft} bytes left (delete datasets or jobs you no longer need)`,
    );
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
    limits: Pick<FormatLimits, "maxDecodedBytes" | "quotaBytesLeft"> = {},
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
    checkDecodedSize(shape, limits);
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
