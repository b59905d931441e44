/**
 * Upload formats, by name. Readers come in two kinds:
 *
 * - "arrays" (NPY_PAIR, NPZ, IDX): the parts hold an image array and a label array. `open`
 *   returns two `RawArray`s, headers parsed and checked against the file, data not yet read;
 *   ingest.ts interprets them (layout, dtype) and streams them into a canonical dataset.
 * - "records" (CIFAR10_BINARY, CLASS_FOLDERS, GTSRB): the parts hold images one by one (archive
 *   members, binary records). `open` checks the whole upload's structure first (layout, class
 *   names, counts, labels) and returns a `RecordDataset` that yields decoded images one at a
 *   time; records.ts streams them into a canonical dataset.
 *
 * To add a format: implement one of the two in its own module, add its name to
 * `DatasetFormat` (canonical.ts) and register it here.
 */

import { type DatasetFormat, IngestError } from "../canonical.ts";
import type { IngestOptionName, IngestOptions } from "../options.ts";
import { cifar10BinaryFormat } from "./cifar.ts";
import { classFoldersFormat } from "./class-folders.ts";
import { gtsrbFormat } from "./gtsrb.ts";
import { idxFormat } from "./idx.ts";
import { npyPairFormat } from "./npy.ts";
import { npzFormat } from "./npz.ts";
import type { OpenedDataset } from "./raw-array.ts";

export type { DatasetFormat } from "../canonical.ts";
export type { ByteSource } from "./byte-source.ts";
export type { Dtype, OpenedDataset, RawArray } from "./raw-array.ts";

export interface FormatLimits {
  /** Cap on the uncompressed bytes of the arrays read (TOO_LARGE above it). */
  maxBytes: number;
  /** Cap on uncompressed/compressed size for compressed archive members (zip bombs). */
  maxCompressionRatio: number;
}

interface FormatDescription {
  readonly name: DatasetFormat;
  /** The part names the API must supply, each a local file path. */
  readonly parts: readonly string[];
  readonly description: string;
  /** The ingest options (options.ts) the format takes; any other is refused. */
  readonly options: readonly IngestOptionName[];
}

export interface ArrayFormatReader extends FormatDescription {
  readonly kind: "arrays";
  /** Opens the parts; throws IngestError for anything the user can fix. Closes what it opened on failure. */
  open(parts: Record<string, string>, limits: FormatLimits): Promise<OpenedDataset>;
}

/** One decoded image and its label. */
export interface ImageRecord {
  /** uint8 H×W×C, row major; the reader may reuse it once the next record is requested */
  pixels: Uint8Array;
  height: number;
  width: number;
  channels: 1 | 3;
  label: number;
  /** where it came from, for messages: e.g. "cat/0001.png" */
  source: string;
}

export interface RecordDataset {
  /** How many records `records()` yields: the canonical header is written before the first. */
  readonly count: number;
  /** Class names in label order, where the format defines them (folder names, batches.meta.txt). */
  readonly classNames?: string[];
  /** The number of classes, where the format fixes it but names none (GTSRB: 43). */
  readonly numClasses?: number;
  /**
   * Every image, decoded, in a deterministic order. Breaking out of the loop (or an error)
   * releases every file and stream the reader opened.
   */
  records(): AsyncIterable<ImageRecord>;
}

export interface RecordFormatReader extends FormatDescription {
  readonly kind: "records";
  /** Rules on the options beyond their types (e.g. a required split); throws BAD_OPTION. */
  checkOptions(options: IngestOptions): void;
  /**
   * Checks the upload's structure and returns its records, not yet decoded. Throws IngestError
   * for anything the user can fix; leaves nothing open.
   */
  open(parts: Record<string, string>, limits: FormatLimits, options: IngestOptions): Promise<RecordDataset>;
}

export type DatasetFormatReader = ArrayFormatReader | RecordFormatReader;

export const FORMATS: Readonly<Record<DatasetFormat, DatasetFormatReader>> = {
  NPY_PAIR: npyPairFormat,
  NPZ: npzFormat,
  IDX: idxFormat,
  CIFAR10_BINARY: cifar10BinaryFormat,
  CLASS_FOLDERS: classFoldersFormat,
  GTSRB: gtsrbFormat,
};

export function getFormat(name: string): DatasetFormatReader {
  const reader = Object.hasOwn(FORMATS, name) ? FORMATS[name as DatasetFormat] : undefined;
  if (reader === undefined) {
    throw new IngestError(
      "UNKNOWN_FORMAT",
      `unknown dataset format ${JSON.stringify(name)}; expected one of ${Object.keys(FORMATS).join(", ")}`,
    );
  }
  return reader;
}
