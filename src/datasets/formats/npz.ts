/**
 * NPZ archives (`np.savez` / `np.savez_compressed`): part `archive`, a zip whose members are
 * `.npy` files, stored or deflated. The images/labels members are found by name, first match
 * wins:
 *
 *   images.npy + labels.npy     np.savez(f, images=..., labels=...)
 *   x.npy + y.npy               np.savez(f, x=..., y=...)
 *   x_train.npy + y_train.npy   Keras-style splits (x_test/y_test are ignored)
 *
 * Other members are ignored and never decompressed. Safety:
 * - every member name is checked: absolute paths, drive letters and `..` segments fail with
 *   UNSAFE_PATH (nothing is ever extracted by name, but such an archive is not trustworthy);
 *   duplicate names, encryption and compression methods other than stored/deflate fail with
 *   BAD_ARCHIVE; more than 10 000 members is TOO_LARGE.
 * - zip bombs: the two members' declared uncompressed sizes must fit `maxBytes`, and when they
 *   exceed 1 MiB together their uncompressed/compressed ratio must not pass
 *   `maxCompressionRatio`. yauzl enforces the declared sizes while inflating, and each
 *   member's CRC-32 is checked once it has been read to the end (CORRUPT otherwise).
 */

import { open } from "node:fs/promises";
import { basename } from "node:path";
import * as zlib from "node:zlib";
import yauzl, { type Entry, type ZipFile } from "yauzl";
import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";
import { type ByteSource, fileSource, observedSource, streamSource } from "./byte-source.ts";
import { parseNpyHeader } from "./npy-header.ts";
import { arrayBytes, datasetOf, type OpenedDataset, type RawArray, shapeText } from "./raw-array.ts";
import type { ArrayFormatReader } from "./reader.ts";
import { sniff } from "./sniff.ts";

/** Member-name pairs tried in order: [images, labels] (each saved as `<name>.npy`). */
export const NPZ_MEMBER_PAIRS: ReadonlyArray<readonly [string, string]> = [
  ["images", "labels"],
  ["x", "y"],
  ["x_train", "y_train"],
];

const MAX_ENTRIES = 10_000;
/** Below this many uncompressed bytes the ratio check does not apply (nothing to fear). */
const RATIO_FLOOR = 1 << 20;

const crc32: ((data: Uint8Array, value?: number) => number) | undefined = (
  zlib as { crc32?: (data: Uint8Array, value?: number) => number }
).crc32;

function zipError(what: string): (error: unknown) => Error {
  return (error) => {
    const e = error as NodeJS.ErrnoException;
    if (e.code === "Z_BUF_ERROR") {
      return new IngestError(
        "TRUNCATED",
        `${what}: the compressed data ends early; the upload is incomplete`,
      );
    }
    if (typeof e.code === "string" && e.code.startsWith("Z_")) {
      return new IngestError("CORRUPT", `${what}: the compressed data is corrupt (${e.message})`);
    }
    if (e instanceof Error && /bytes in the stream|file data overflows|local file header/.test(e.message)) {
      return new IngestError("CORRUPT", `${what}: the archive is corrupt (${e.message})`);
    }
    return error instanceof Error ? error : new Error(String(error));
  };
}

async function openZip(path: string, label: string): Promise<ZipFile> {
  try {
    return await yauzl.openPromise(path, {
      lazyEntries: true,
      autoClose: false,
      decodeStrings: false, // names are decoded and validated below, as UNSAFE_PATH
      validateEntrySizes: true,
    });
  } catch (e) {
    const file = await open(path, "r");
    const head = Buffer.alloc(8);
    const { bytesRead } = await file.read(head, 0, 8, 0).finally(() => file.close());
    const hint = sniff(head.subarray(0, bytesRead));
    throw new IngestError(
      "BAD_ARCHIVE",
      `${label}: not a valid zip/NPZ archive (${(e as Error).message})${hint && !hint.includes("zip") ? `; ${hint}` : ""}`,
    );
  }
}

async function listEntries(zip: ZipFile, label: string): Promise<Map<string, Entry>> {
  if (zip.entryCount > MAX_ENTRIES) {
    throw new IngestError(
      "TOO_LARGE",
      `${label}: the archive has ${zip.entryCount} members; at most ${MAX_ENTRIES}`,
    );
  }
  const entries = new Map<string, Entry>();
  try {
    for await (const entry of zip.eachEntry()) {
      const name = yauzl.getFileNameLowLevel(
        entry.generalPurposeBitFlag,
        entry.fileNameRaw,
        entry.extraFields,
        false,
      );
      const problem = yauzl.validateFileName(name);
      if (problem !== null) {
        throw new IngestError(
          "UNSAFE_PATH",
          `${label}: member ${JSON.stringify(name)} has an unsafe path (${problem.split(":")[0]}); archives must hold plain member names`,
        );
      }
      if (name.endsWith("/")) continue;
      if (entries.has(name)) {
        throw new IngestError("BAD_ARCHIVE", `${label}: member ${JSON.stringify(name)} appears twice`);
      }
      entries.set(name, entry);
    }
  } catch (e) {
    if (e instanceof IngestError) throw e;
    throw new IngestError(
      "BAD_ARCHIVE",
      `${label}: the archive's directory is malformed (${(e as Error).message})`,
    );
  }
  return entries;
}

function selectMembers(entries: Map<string, Entry>, label: string): [string, string] {
  for (const [images, labels] of NPZ_MEMBER_PAIRS) {
    if (entries.has(`${images}.npy`) && entries.has(`${labels}.npy`))
      return [`${images}.npy`, `${labels}.npy`];
  }
  for (const pair of NPZ_MEMBER_PAIRS) {
    const [a, b] = pair.map((n) => `${n}.npy`) as [string, string];
    if (entries.has(a) || entries.has(b)) {
      const [present, missing] = entries.has(a) ? [a, b] : [b, a];
      throw new IngestError("MISSING_PART", `${label}: the archive has ${present} but no ${missing}`);
    }
  }
  const names = [...entries.keys()].slice(0, 20).join(", ") || "nothing";
  throw new IngestError(
    "MISSING_PART",
    `${label}: no images/labels arrays found (holds ${names}); save with np.savez(path, images=x, labels=y) (x/y and x_train/y_train also work)`,
  );
}

function checkEntry(entry: Entry, what: string): void {
  if (entry.isEncrypted())
    throw new IngestError("BAD_ARCHIVE", `${what}: encrypted members are not supported`);
  if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
    throw new IngestError(
      "BAD_ARCHIVE",
      `${what}: compression method ${entry.compressionMethod} is not supported; use np.savez or np.savez_compressed (stored or deflate)`,
    );
  }
}

/**
 * A member's bytes: stored members are read straight from the archive file with one reusable
 * buffer (like a plain .npy); deflated ones through yauzl's inflating stream. Either way the
 * CRC-32 is checked when the member has been read to its end.
 */
async function memberSource(zip: ZipFile, path: string, entry: Entry, what: string): Promise<ByteSource> {
  let raw: ByteSource;
  try {
    if (entry.compressionMethod === 0) {
      const { fileDataStart } = await zip.readLocalFileHeaderPromise(entry, { minimal: true });
      const file = await open(path, "r");
      raw = fileSource(file, fileDataStart, fileDataStart + entry.compressedSize);
    } else {
      raw = streamSource(await zip.openReadStreamPromise(entry), zipError(what));
    }
  } catch (e) {
    throw new IngestError("BAD_ARCHIVE", `${what}: cannot read the member (${(e as Error).message})`);
  }
  if (!crc32) return raw;
  const crcOf = crc32;
  let crc = 0;
  return observedSource(raw, {
    onData: (bytes) => {
      crc = crcOf(bytes, crc);
    },
    onEnd: () => {
      if (crc >>> 0 !== entry.crc32 >>> 0) {
        throw new IngestError("CORRUPT", `${what}: CRC-32 mismatch; the archive is corrupt`);
      }
    },
  });
}

async function openMember(zip: ZipFile, path: string, entry: Entry, what: string): Promise<RawArray> {
  const source = await memberSource(zip, path, entry, what);
  try {
    const header = await parseNpyHeader(source, what);
    const dataBytes = arrayBytes(header.shape, header.dtype.size, what);
    const expected = header.headerBytes + dataBytes;
    if (entry.uncompressedSize < expected) {
      throw new IngestError(
        "TRUNCATED",
        `${what}: the header promises ${dataBytes} bytes of data (shape ${shapeText(header.shape)}, ${header.dtype.name}) but the member holds only ${entry.uncompressedSize - header.headerBytes}`,
      );
    }
    if (entry.uncompressedSize > expected) {
      throw new IngestError(
        "TRAILING_DATA",
        `${what}: ${entry.uncompressedSize - expected} bytes follow the data the header promises (shape ${shapeText(header.shape)})`,
      );
    }
    return { what, dtype: header.dtype, shape: header.shape, dataBytes, source };
  } catch (e) {
    await source.close();
    throw e;
  }
}

export const npzFormat: ArrayFormatReader = {
  kind: "arrays",
  name: "NPZ",
  options: [],
  parts: ["archive"],
  description: "one .npz archive holding images/labels (or x/y, x_train/y_train) arrays",
  async open(parts: Record<string, string>, limits: FormatLimits): Promise<OpenedDataset> {
    const path = parts.archive as string;
    const label = `archive (${basename(path)})`;
    const zip = await openZip(path, label);
    const closeZip = async () => {
      if (zip.isOpen) zip.close();
    };
    let images: RawArray | undefined;
    try {
      const entries = await listEntries(zip, label);
      const [imagesName, labelsName] = selectMembers(entries, label);
      const imagesEntry = entries.get(imagesName) as Entry;
      const labelsEntry = entries.get(labelsName) as Entry;
      const imagesWhat = `images (${imagesName} in ${basename(path)})`;
      const labelsWhat = `labels (${labelsName} in ${basename(path)})`;
      checkEntry(imagesEntry, imagesWhat);
      checkEntry(labelsEntry, labelsWhat);
      const uncompressed = imagesEntry.uncompressedSize + labelsEntry.uncompressedSize;
      const compressed = imagesEntry.compressedSize + labelsEntry.compressedSize;
      if (uncompressed > limits.maxBytes) {
        throw new IngestError(
          "TOO_LARGE",
          `${label}: the arrays expand to ${uncompressed} bytes; the limit is ${limits.maxBytes}`,
        );
      }
      if (uncompressed > RATIO_FLOOR && uncompressed > limits.maxCompressionRatio * compressed) {
        throw new IngestError(
          "TOO_LARGE",
          `${label}: the arrays expand ${Math.round(uncompressed / Math.max(compressed, 1))}x (${compressed} -> ${uncompressed} bytes), more than the ${limits.maxCompressionRatio}x allowed for compressed archives; save with np.savez (uncompressed)`,
        );
      }
      images = await openMember(zip, path, imagesEntry, imagesWhat);
      const labels = await openMember(zip, path, labelsEntry, labelsWhat);
      return datasetOf(images, labels, closeZip);
    } catch (e) {
      await images?.source.close();
      await closeZip();
      throw e;
    }
  },
};
