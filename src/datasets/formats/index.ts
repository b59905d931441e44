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
 * The reader contract is in reader.ts. To add a format: implement one of the two in its own
 * module, add its name to `DatasetFormat` (../types.ts) and register it here.
 */

import { IngestError } from "../ingest-error.ts";
import type { DatasetFormat } from "../types.ts";
import { cifar10BinaryFormat } from "./cifar.ts";
import { classFoldersFormat } from "./class-folders.ts";
import { gtsrbFormat } from "./gtsrb.ts";
import { idxFormat } from "./idx.ts";
import { npyPairFormat } from "./npy.ts";
import { npzFormat } from "./npz.ts";
import type { DatasetFormatReader } from "./reader.ts";

export type { DatasetFormat, FormatLimits } from "../types.ts";
export type { ByteSource } from "./byte-source.ts";
export type { Dtype, OpenedDataset, RawArray } from "./raw-array.ts";
export type {
  ArrayFormatReader,
  DatasetFormatReader,
  ImageRecord,
  RecordDataset,
  RecordFormatReader,
} from "./reader.ts";

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
