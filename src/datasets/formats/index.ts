/**
 * Upload formats, by name. Each reader turns its named parts (local files staged by the
 * worker/API) into two `RawArray`s, images and labels: headers parsed and checked against the
 * file, data not yet read. ingest.ts interprets the arrays (layout, dtype) and streams them
 * into a canonical dataset.
 *
 * To add a format: implement `DatasetFormatReader` in its own module, add its name to
 * `DatasetFormat` (canonical.ts) and register it here.
 */

import { type DatasetFormat, IngestError } from "../canonical.ts";
import { idxFormat } from "./idx.ts";
import { npyPairFormat, type RawArray } from "./npy.ts";
import { npzFormat } from "./npz.ts";

export type { DatasetFormat } from "../canonical.ts";
export type { ByteSource, Dtype, RawArray } from "./npy.ts";

export interface FormatLimits {
  /** Cap on the uncompressed bytes of the arrays read (TOO_LARGE above it). */
  maxBytes: number;
  /** Cap on uncompressed/compressed size for compressed archive members (zip bombs). */
  maxCompressionRatio: number;
}

export interface OpenedDataset {
  images: RawArray;
  labels: RawArray;
  /** Releases every file and stream; safe after a partial read or an error. */
  close(): Promise<void>;
}

export interface DatasetFormatReader {
  readonly name: DatasetFormat;
  /** The part names the API must supply, each a local file path. */
  readonly parts: readonly string[];
  readonly description: string;
  /** Opens the parts; throws IngestError for anything the user can fix. Closes what it opened on failure. */
  open(parts: Record<string, string>, limits: FormatLimits): Promise<OpenedDataset>;
}

export const FORMATS: Readonly<Record<DatasetFormat, DatasetFormatReader>> = {
  NPY_PAIR: npyPairFormat,
  NPZ: npzFormat,
  IDX: idxFormat,
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
