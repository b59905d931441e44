/**
 * The `NPY_PAIR` format: two `.npy` files (numpy's format versions 1.0, 2.0 and 3.0), parts
 * `images` and `labels`, each read as a stream (headers: npy-header.ts).
 *
 * Rules:
 * - object dtypes ('|O', or any structured dtype with an 'O' field) are pickles and are
 *   refused before a single data byte is read (PICKLE_NOT_ALLOWED); so is a pickle file.
 * - `fortran_order: True` is refused (UNSUPPORTED_LAYOUT) unless at most one dimension is
 *   larger than 1, where both orders are the same bytes (e.g. every 1-D label array).
 *   Transposing a column-major image array needs strided reads across the whole file;
 *   `np.ascontiguousarray(a)` before `np.save` fixes it at the source.
 * - the file must hold exactly the bytes the header promises (TRUNCATED / TRAILING_DATA).
 */

import { open, stat } from "node:fs/promises";
import { basename } from "node:path";
import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";
import { fileSource } from "./byte-source.ts";
import { parseNpyHeader } from "./npy-header.ts";
import { arrayBytes, datasetOf, type OpenedDataset, openAll, type RawArray, shapeText } from "./raw-array.ts";
import type { ArrayFormatReader } from "./reader.ts";

/**
 * Opens a `.npy` file: parses its header and checks the file size against it, so truncation
 * and trailing bytes are reported before any data is read.
 */
export async function openNpyFile(path: string, what: string): Promise<RawArray> {
  const label = `${what} (${basename(path)})`;
  const file = await open(path, "r");
  const source = fileSource(file, 0);
  try {
    const { size } = await stat(path);
    const header = await parseNpyHeader(source, label);
    const dataBytes = arrayBytes(header.shape, header.dtype.size, label);
    const expected = header.headerBytes + dataBytes;
    if (size < expected) {
      throw new IngestError(
        "TRUNCATED",
        `${label}: the header promises ${dataBytes} bytes of data (shape ${shapeText(header.shape)}, ${header.dtype.name}) but the file holds only ${size - header.headerBytes}; the upload is incomplete`,
      );
    }
    if (size > expected) {
      throw new IngestError(
        "TRAILING_DATA",
        `${label}: ${size - expected} bytes follow the data the header promises (shape ${shapeText(header.shape)}, ${header.dtype.name}); the file is not a single array`,
      );
    }
    return { what: label, dtype: header.dtype, shape: header.shape, dataBytes, source };
  } catch (e) {
    await source.close();
    throw e;
  }
}

export const npyPairFormat: ArrayFormatReader = {
  kind: "arrays",
  name: "NPY_PAIR",
  options: [],
  parts: ["images", "labels"],
  description: "two .npy files: images (uint8 or float in [0,1]) and integer labels",
  async open(parts: Record<string, string>, _limits: FormatLimits): Promise<OpenedDataset> {
    const [images, labels] = await openAll([
      () => openNpyFile(parts.images as string, "images"),
      () => openNpyFile(parts.labels as string, "labels"),
    ]);
    return datasetOf(images as RawArray, labels as RawArray);
  },
};
