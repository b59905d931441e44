/**
 * What a format reader is (formats/index.ts registers one per format). Two kinds:
 * "arrays" readers open an image array and a label array (`OpenedDataset`); "records" readers
 * check the whole upload and then yield decoded images one at a time (`RecordDataset`).
 */

import type { IngestOptionName, IngestOptions } from "../options.ts";
import type { DatasetFormat, FormatLimits } from "../types.ts";
import type { OpenedDataset } from "./raw-array.ts";

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
