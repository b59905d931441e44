/**
 * Fixtures for the archive formats, written byte by byte (independently of the code under test
 * and of tar-stream): ustar archives, PNG and PPM images, and archives of either kind built
 * from a list of members. Zip archives come from helpers.ts `zipBytes`.
 */

import * as zlib from "node:zlib";
import { gzipSync } from "node:zlib";
import { type ZipMember, zipBytes } from "./helpers.ts";

export type TarType = "file" | "directory" | "symlink" | "hardlink" | "char-device" | "block-device" | "fifo";

export interface TarEntry {
  name: string;
  data?: Uint8Array;
  type?: TarType;
  linkname?: string;
}

const TYPE_FLAGS: Record<TarType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  "char-device": "3",
  "block-device": "4",
  directory: "5",
  fifo: "6",
};

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function tarHeader(entry: TarEntry, size: number): Buffer {
  const header = Buffer.alloc(512);
  let name = entry.name;
  let prefix = "";
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf("/", 155);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  header.write(name, 0, 100, "utf8");
  header.write(octal(entry.type === "directory" ? 0o755 : 0o644, 8), 100, "latin1");
  header.write(octal(0, 8), 108, "latin1");
  header.write(octal(0, 8), 116, "latin1");
  header.write(octal(size, 12), 124, "latin1");
  header.write(octal(1_700_000_000, 12), 136, "latin1");
  header.write("        ", 148, "latin1");
  header.write(TYPE_FLAGS[entry.type ?? "file"], 156, "latin1");
  header.write(entry.linkname ?? "", 157, 100, "utf8");
  header.write("ustar\0", 257, "latin1");
  header.write("00", 263, "latin1");
  header.write(octal(0, 8), 329, "latin1");
  header.write(octal(0, 8), 337, "latin1");
  header.write(prefix, 345, 155, "utf8");
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return header;
}

/** A ustar archive; `endBlocks` zero blocks close it (2 is what tar writers emit). */
export function tarBytes(entries: TarEntry[], endBlocks = 2): Buffer {
  const pieces: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? new Uint8Array(0));
    pieces.push(tarHeader(entry, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  pieces.push(Buffer.alloc(512 * endBlocks));
  return Buffer.concat(pieces);
}

export type ArchiveKind = "tar" | "tar.gz" | "zip";
export const ARCHIVE_KINDS: readonly ArchiveKind[] = ["tar", "tar.gz", "zip"];

/** Files (name → bytes; a name ending in "/" is a folder) as an archive of `kind`. */
export function archiveOf(kind: ArchiveKind, files: Array<[string, Uint8Array]>): Buffer {
  if (kind === "zip") {
    const members: ZipMember[] = files.map(([name, data]) => ({ name, data, method: "deflate" }));
    return zipBytes(members);
  }
  const tar = tarBytes(
    files.map(([name, data]) =>
      name.endsWith("/") ? { name, type: "directory" as const } : { name, data, type: "file" as const },
    ),
  );
  return kind === "tar.gz" ? gzipSync(tar) : tar;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

const PNG_COLOUR_TYPES = { 1: 0, 2: 4, 3: 2, 4: 6 } as const;

/** A PNG (no filtering) of H×W×C samples; C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; 8 or 16 bits. */
export function pngBytes(
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  samples: ArrayLike<number>,
  bitDepth: 8 | 16 = 8,
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = PNG_COLOUR_TYPES[channels];
  const bytesPerSample = bitDepth / 8;
  const rowBytes = width * channels * bytesPerSample;
  const raw = Buffer.alloc(height * (rowBytes + 1));
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < width * channels; i++) {
      const value = samples[y * width * channels + i] as number;
      const at = y * (rowBytes + 1) + 1 + i * bytesPerSample;
      if (bitDepth === 8) raw[at] = value;
      else raw.writeUInt16BE(value, at);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", zlib.deflateSync(raw)),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A netpbm image: P5/P6 binary, P2/P3 plain text (optionally with a header comment). */
export function ppmBytes(
  magic: "P2" | "P3" | "P5" | "P6",
  width: number,
  height: number,
  samples: ArrayLike<number>,
  maxval = 255,
  comment?: string,
): Buffer {
  const head = `${magic}\n${comment ? `# ${comment}\n` : ""}${width} ${height}\n${maxval}\n`;
  if (magic === "P5" || magic === "P6")
    return Buffer.concat([Buffer.from(head, "latin1"), Buffer.from(Array.from(samples))]);
  const values = Array.from(samples, String);
  const lines: string[] = [];
  for (let i = 0; i < values.length; i += 12) lines.push(values.slice(i, i + 12).join(" "));
  return Buffer.from(`${head}${lines.join("\n")}\n`, "latin1");
}

/** H×W×C (RGB) → C planes of H×W, as CIFAR stores them. */
export function toPlanes(hwc: Uint8Array, pixels: number): Buffer {
  const out = Buffer.alloc(hwc.length);
  for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) out[c * pixels + p] = hwc[p * 3 + c] as number;
  return out;
}
