/**
 * Ingest: uploaded files (already on local disk) → a canonical dataset directory
 * (see canonical.ts), streamed in chunks of at most 8 MiB of image rows, so memory stays
 * bounded whatever the dataset size.
 *
 * Array formats (NPY_PAIR, NPZ, IDX): array-ingest.ts, which documents how images and labels are
 * read and converted.
 *
 * Archive formats (CIFAR10_BINARY, CLASS_FOLDERS, GTSRB; formats/index.ts "records" readers)
 * take `options` (options.ts), check the whole upload's structure first, then decode one image
 * at a time into records.ts. There `maxBytes` caps how far the archive expands and
 * `maxCompressionRatio` how far it expands relative to its size on disk.
 *
 * Every user-fixable problem is an `IngestError` with a stable code; on any error nothing is
 * left at `outDir` (the writer works in a temporary directory next to it and renames at the end).
 */

import { stat } from "node:fs/promises";
import { ingestArrays, MAX_IMAGE_BYTES } from "./array-ingest.ts";
import type { CanonicalManifest } from "./canonical.ts";
import { type CanonicalWriterOptions, checkClassOptions } from "./canonical-writer.ts";
import { FORMATS, type FormatLimits, getFormat, type RecordFormatReader } from "./formats/index.ts";
import { IngestError } from "./ingest-error.ts";
import { type IngestOptions, parseIngestOptions } from "./options.ts";
import { writeRecords } from "./records.ts";
import type { DatasetFormat } from "./types.ts";

export { MAX_IMAGE_BYTES } from "./array-ingest.ts";
export { type CanonicalManifest, readManifest } from "./canonical.ts";
export { IngestError } from "./ingest-error.ts";
export type { DatasetFormat } from "./types.ts";

export interface IngestInput {
  format: DatasetFormat;
  /** part name → local file path; see FORMAT_PARTS (NPZ uses "archive"). */
  parts: Record<string, string>;
  numClasses?: number;
  classNames?: string[];
  /** Cap on the uncompressed bytes of the source arrays (default DEFAULT_MAX_BYTES). */
  maxBytes?: number;
  /** Cap on uncompressed/compressed size of NPZ members and archives (default DEFAULT_MAX_COMPRESSION_RATIO). */
  maxCompressionRatio?: number;
  /** Archive formats' options (options.ts), as given by the user; checked here. */
  options?: unknown;
  /** Caps on the decoded dataset, checked before a byte of it is written (FormatLimits). */
  maxDecodedBytes?: number;
  quotaBytesLeft?: number;
}

export const DEFAULT_MAX_BYTES = 8 * 1024 ** 3;
export const DEFAULT_MAX_COMPRESSION_RATIO = 100;

/** The parts each format needs, e.g. NPY_PAIR: ["images", "labels"], NPZ: ["archive"]. */
export const FORMAT_PARTS: Record<DatasetFormat, string[]> = Object.fromEntries(
  Object.entries(FORMATS).map(([name, reader]) => [name, [...reader.parts]]),
) as Record<DatasetFormat, string[]>;

async function checkParts(format: DatasetFormat, needed: readonly string[], parts: Record<string, string>) {
  if (typeof parts !== "object" || parts === null) {
    throw new IngestError("MISSING_PART", `format ${format} needs the parts ${needed.join(", ")}`);
  }
  for (const name of Object.keys(parts)) {
    if (!needed.includes(name)) {
      throw new IngestError(
        "UNKNOWN_PART",
        `format ${format} takes the parts ${needed.join(", ")}, not ${JSON.stringify(name)}`,
      );
    }
  }
  for (const name of needed) {
    const path = parts[name];
    if (typeof path !== "string" || path === "") {
      throw new IngestError(
        "MISSING_PART",
        `format ${format} needs the part ${JSON.stringify(name)}; it was not uploaded`,
      );
    }
    const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    if (info === null || !info.isFile()) {
      throw new IngestError("MISSING_PART", `the file for part ${JSON.stringify(name)} was not found`);
    }
    if (info.size === 0) throw new IngestError("EMPTY", `the file for part ${JSON.stringify(name)} is empty`);
  }
}

function positiveOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value > 0))
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  return value;
}

/**
 * Checks a format's options (options.ts) as given by a user: unknown or misplaced options,
 * values out of range, and the format's own rules. Throws IngestError BAD_OPTION with `field`.
 */
export function checkIngestOptions(format: string, raw: unknown): IngestOptions {
  const reader = getFormat(format);
  const options = parseIngestOptions(reader.name, reader.options, raw);
  if (reader.kind === "records") reader.checkOptions(options);
  return options;
}

/** Turns an uploaded dataset into a canonical dataset at `outDir` (which must not exist yet). */
export async function ingest(input: IngestInput, outDir: string): Promise<CanonicalManifest> {
  const reader = getFormat(input.format);
  const limits: FormatLimits = {
    maxBytes: positiveOption("maxBytes", input.maxBytes, DEFAULT_MAX_BYTES),
    maxCompressionRatio: positiveOption(
      "maxCompressionRatio",
      input.maxCompressionRatio,
      DEFAULT_MAX_COMPRESSION_RATIO,
    ),
    maxDecodedBytes: input.maxDecodedBytes,
    quotaBytesLeft: input.quotaBytesLeft,
  };
  const classOptions = { numClasses: input.numClasses, classNames: input.classNames };
  checkClassOptions(classOptions);
  const options = checkIngestOptions(reader.name, input.options);
  await checkParts(reader.name, reader.parts, input.parts);
  if (reader.kind === "records")
    return ingestRecords(reader, input.parts, limits, options, classOptions, outDir);
  return ingestArrays(reader, input.parts, limits, classOptions, outDir);
}

/**
 * Archive formats: the reader checks the upload's structure, then its records stream into the
 * canonical writer. Class names given by the user replace the format's own, one for one.
 */
async function ingestRecords(
  reader: RecordFormatReader,
  parts: Record<string, string>,
  limits: FormatLimits,
  options: IngestOptions,
  given: CanonicalWriterOptions,
  outDir: string,
): Promise<CanonicalManifest> {
  const dataset = await reader.open(parts, limits, options);
  const found = dataset.classNames?.length ?? dataset.numClasses;
  const wanted = given.classNames?.length ?? given.numClasses;
  if (wanted !== undefined && found !== undefined && wanted !== found) {
    throw new IngestError(
      "BAD_CLASS_NAMES",
      `the upload has ${found} classes but ${wanted} were given (classNames/numClasses); give one name per class, in label order`,
    );
  }
  const classOptions: CanonicalWriterOptions = {
    numClasses: wanted ?? found,
    classNames: given.classNames ?? dataset.classNames,
  };
  checkClassOptions(classOptions, dataset.count);
  return writeRecords(dataset.records(), outDir, {
    count: dataset.count,
    classOptions,
    sourceFormat: reader.name,
    maxImageBytes: MAX_IMAGE_BYTES,
    limits,
  });
}
