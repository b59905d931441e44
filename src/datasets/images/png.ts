/**
 * A fast path for the PNGs datasets are made of: 8-bit grey, grey+alpha, RGB or RGBA, not
 * interlaced, no colour profile. Such a file is inflated with Node's zlib and unfiltered here,
 * several times faster than a libvips pipeline per image (whose set-up dominates at 64×64).
 *
 * Anything else — palette, 1/2/4/16-bit samples, Adam7, an iCCP or tRNS chunk, a bad CRC, a
 * truncated or oversized stream, any structural oddity — returns null and goes to sharp, so the
 * fast path never decides what an unusual or broken file means: the pixels it returns are the
 * ones sharp returns (tests/datasets/png-fast-path.test.ts compares them), and every error still
 * comes from one decoder. Alpha is dropped as for sharp's output (alpha.ts).
 */

import { crc32, inflateSync } from "node:zlib";
import { withoutAlpha } from "./alpha.ts";
import type { RawImage } from "./ppm.ts";

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Colour type → samples per pixel, for the colour types the fast path takes. */
const SAMPLES: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };
/** Chunks that change what the pixels mean; their presence sends the file to sharp. */
const NOT_FAST = new Set(["iCCP", "tRNS", "PLTE"]);

interface Header {
  width: number;
  height: number;
  samples: number;
}

/** The header and the concatenated IDAT data, or null when the file is not for the fast path. */
function readChunks(bytes: Uint8Array, maxPixels: number): { header: Header; idat: Buffer } | null {
  if (bytes.length < 8 + 25 + 12) return null;
  for (let i = 0; i < 8; i++) if (bytes[i] !== SIGNATURE[i]) return null;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: Header | null = null;
  const idat: Buffer[] = [];
  let idatEnded = false;
  let pos = 8;
  while (pos + 12 <= view.length) {
    const length = view.readUInt32BE(pos);
    const end = pos + 12 + length;
    if (length > 0x7fffffff || end > view.length) return null;
    const type = view.toString("latin1", pos + 4, pos + 8);
    if (crc32(view.subarray(pos + 4, pos + 8 + length)) !== view.readUInt32BE(pos + 8 + length)) return null;
    const data = view.subarray(pos + 8, pos + 8 + length);
    if (header === null) {
      if (type !== "IHDR" || length !== 13) return null;
      const width = data.readUInt32BE(0);
      const height = data.readUInt32BE(4);
      const samples = SAMPLES[data[9] as number];
      // depth 8, compression 0, filter method 0, not interlaced
      if (data[8] !== 8 || samples === undefined || data[10] !== 0 || data[11] !== 0 || data[12] !== 0)
        return null;
      if (width < 1 || height < 1 || width * height > maxPixels) return null;
      header = { width, height, samples };
    } else if (type === "IDAT") {
      if (idatEnded) return null;
      idat.push(data);
    } else {
      if (idat.length > 0) idatEnded = true;
      if (type === "IEND")
        return idat.length > 0 && end === view.length ? { header, idat: Buffer.concat(idat) } : null;
      if (NOT_FAST.has(type) || type === "IHDR") return null;
    }
    pos = end;
  }
  return null;
}

/** Reverses the five PNG row filters in place of `rows` (each row: filter byte + `stride` bytes). */
function unfilter(rows: Buffer, height: number, stride: number, bpp: number): Buffer | null {
  const out = Buffer.allocUnsafe(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = rows[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const o = y * stride;
    const up = o - stride; // previous output row; absent (zeros) on the first row
    if (filter === 0 || (filter === 2 && y === 0)) {
      rows.copy(out, o, src, src + stride);
    } else if (filter === 1) {
      for (let x = 0; x < bpp; x++) out[o + x] = rows[src + x] as number;
      for (let x = bpp; x < stride; x++)
        out[o + x] = ((rows[src + x] as number) + (out[o + x - bpp] as number)) & 255;
    } else if (filter === 2) {
      for (let x = 0; x < stride; x++)
        out[o + x] = ((rows[src + x] as number) + (out[up + x] as number)) & 255;
    } else if (filter === 3) {
      for (let x = 0; x < stride; x++) {
        const left = x >= bpp ? (out[o + x - bpp] as number) : 0;
        const above = y > 0 ? (out[up + x] as number) : 0;
        out[o + x] = ((rows[src + x] as number) + ((left + above) >> 1)) & 255;
      }
    } else if (filter === 4) {
      for (let x = 0; x < stride; x++) {
        const a = x >= bpp ? (out[o + x - bpp] as number) : 0;
        const b = y > 0 ? (out[up + x] as number) : 0;
        const c = x >= bpp && y > 0 ? (out[up + x - bpp] as number) : 0;
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        const predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        out[o + x] = ((rows[src + x] as number) + predicted) & 255;
      }
    } else {
      return null;
    }
  }
  return out;
}

/** Decodes a plain 8-bit PNG (see the file comment), or returns null for sharp to decode it. */
export function decodePlainPng(bytes: Uint8Array, maxPixels: number): RawImage | null {
  const found = readChunks(bytes, maxPixels);
  if (found === null) return null;
  const { width, height, samples } = found.header;
  const stride = width * samples;
  const expected = height * (stride + 1);
  let rows: Buffer;
  try {
    // one byte over the exact size tells "too much data" apart from "just right"
    rows = inflateSync(found.idat, { maxOutputLength: expected + 1 });
  } catch {
    return null;
  }
  if (rows.length !== expected) return null;
  const pixels = unfilter(rows, height, stride, samples);
  return pixels === null ? null : withoutAlpha(pixels, width, height, samples);
}
