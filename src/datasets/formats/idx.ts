/**
 * IDX files (MNIST, Fashion-MNIST, EMNIST, ...): parts `images` and `labels`, each raw or
 * gzip-compressed. Compression is recognised by the gzip magic (1f 8b), never by the file
 * name. Layout: bytes 0,0, a type code, the number of dimensions, then each dimension as a
 * big-endian uint32, then the big-endian data.
 *
 * A gzipped part is decompressed as a stream and read only as far as its header promises (plus
 * one byte to detect trailing data), so a gzip bomb costs no more than the declared size, which
 * ingest caps with `maxBytes`.
 */

import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { basename } from "node:path";
import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";
import { type ByteSource, fileSource, readExactly, streamSource } from "./byte-source.ts";
import {
  arrayBytes,
  type Dtype,
  datasetOf,
  makeDtype,
  type OpenedDataset,
  openAll,
  type RawArray,
  shapeText,
} from "./raw-array.ts";
import type { ArrayFormatReader } from "./reader.ts";
import { sniff } from "./sniff.ts";

/** IDX type codes; data is big-endian. */
const IDX_TYPES = new Map<number, Dtype>([
  [0x08, makeDtype("u", 1, false)],
  [0x09, makeDtype("i", 1, false)],
  [0x0b, makeDtype("i", 2, false)],
  [0x0c, makeDtype("i", 4, false)],
  [0x0d, makeDtype("f", 4, false)],
  [0x0e, makeDtype("f", 8, false)],
]);

const MAX_IDX_DIMS = 8;

function zlibError(what: string): (error: unknown) => Error {
  return (error) => {
    const e = error as NodeJS.ErrnoException;
    if (e.code === "Z_BUF_ERROR") {
      return new IngestError("TRUNCATED", `${what}: the gzip stream ends early; the upload is incomplete`);
    }
    if (typeof e.code === "string" && e.code.startsWith("Z_")) {
      return new IngestError(
        "CORRUPT",
        `${what}: the gzip data is corrupt or followed by stray bytes (${e.message})`,
      );
    }
    return error instanceof Error ? error : new Error(String(error));
  };
}

/** Opens an IDX file (raw or gzipped) and parses its header. */
export async function openIdxFile(path: string, what: string): Promise<RawArray> {
  const label = `${what} (${basename(path)})`;
  const file = await open(path, "r");
  const magic = Buffer.alloc(2);
  const { bytesRead } = await file.read(magic, 0, 2, 0).catch(async (e) => {
    await file.close();
    throw e;
  });
  const gzipped = bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  let source: ByteSource;
  if (gzipped) {
    await file.close();
    const gunzip = createGunzip();
    // Errors of either stream surface through gunzip's iterator; the callback only keeps
    // pipeline from reporting them as unhandled.
    pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), gunzip, () => {});
    source = streamSource(gunzip, zlibError(label));
  } else {
    source = fileSource(file, 0);
  }
  try {
    const head = Buffer.alloc(4);
    const n = await source.read(head, 0, 4);
    const type = head[2] ?? -1;
    const ndim = head[3] ?? 0;
    if (n < 4 || head[0] !== 0 || head[1] !== 0 || !IDX_TYPES.has(type)) {
      const start = Buffer.alloc(8);
      head.copy(start, 0, 0, n);
      const more = n === 4 ? await source.read(start, 4, 4) : 0;
      const hint = sniff(start.subarray(0, n + more));
      throw new IngestError(
        "BAD_HEADER",
        `${label}: not an IDX file (expected 00 00, a type code and a dimension count${hint && !hint.includes("IDX") ? `; ${hint}` : ""})`,
      );
    }
    if (ndim < 1 || ndim > MAX_IDX_DIMS) {
      throw new IngestError("BAD_HEADER", `${label}: IDX header declares ${ndim} dimensions`);
    }
    const dims = await readExactly(source, 4 * ndim, label, "header");
    const shape = Array.from({ length: ndim }, (_, i) => dims.readUInt32BE(4 * i));
    const dtype = IDX_TYPES.get(type) as Dtype;
    const dataBytes = arrayBytes(shape, dtype.size, label);
    if (!gzipped) {
      const { size } = await stat(path);
      const expected = 4 + 4 * ndim + dataBytes;
      if (size < expected) {
        throw new IngestError(
          "TRUNCATED",
          `${label}: the header promises ${dataBytes} bytes of data (shape ${shapeText(shape)}, ${dtype.name}) but the file holds only ${Math.max(0, size - 4 - 4 * ndim)}; the upload is incomplete`,
        );
      }
      if (size > expected) {
        throw new IngestError(
          "TRAILING_DATA",
          `${label}: ${size - expected} bytes follow the data the header promises (shape ${shapeText(shape)})`,
        );
      }
    }
    return { what: label, dtype, shape, dataBytes, source };
  } catch (e) {
    await source.close();
    throw e;
  }
}

export const idxFormat: ArrayFormatReader = {
  kind: "arrays",
  name: "IDX",
  options: [],
  parts: ["images", "labels"],
  description: "two IDX files (MNIST style), each raw or gzipped: images and labels",
  async open(parts: Record<string, string>, _limits: FormatLimits): Promise<OpenedDataset> {
    const [images, labels] = await openAll([
      () => openIdxFile(parts.images as string, "images"),
      () => openIdxFile(parts.labels as string, "labels"),
    ]);
    return datasetOf(images as RawArray, labels as RawArray);
  },
};
