/**
 * Netpbm images (GTSRB ships PPM), which sharp cannot read: P6 (binary RGB), P3 (plain-text
 * RGB), and their grey siblings P5 and P2, with maxval up to 255. Samples are scaled to 0..255
 * by round(v * 255 / maxval), so maxval 255 is taken byte for byte.
 *
 * Header: magic, width, height, maxval separated by whitespace, `#` comments running to the
 * end of a line; one whitespace byte, then the raster. Bytes after the raster (further images
 * of a multi-image file) are ignored, as netpbm readers do for the first image.
 */

import { IngestError } from "../ingest-error.ts";

export interface RawImage {
  /** uint8, H×W×C, row major */
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 3;
}

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);

export function isPpm(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x50 && [0x32, 0x33, 0x35, 0x36].includes(bytes[1] ?? 0);
}

/** Decodes a P2/P3/P5/P6 image; UNDECODABLE_IMAGE (or TOO_LARGE past `maxPixels`) otherwise. */
export function decodePpm(bytes: Uint8Array, what: string, maxPixels: number): RawImage {
  const fail = (why: string) =>
    new IngestError("UNDECODABLE_IMAGE", `${what}: not a readable PPM image (${why})`);
  if (!isPpm(bytes)) throw fail("it does not start with P2, P3, P5 or P6");
  const kind = bytes[1] as number;
  const channels: 1 | 3 = kind === 0x33 || kind === 0x36 ? 3 : 1;
  const plain = kind === 0x32 || kind === 0x33;
  let pos = 2;

  const skipSpaceAndComments = () => {
    while (pos < bytes.length) {
      const c = bytes[pos] as number;
      if (WHITESPACE.has(c)) pos++;
      else if (c === 0x23) {
        while (pos < bytes.length && bytes[pos] !== 0x0a && bytes[pos] !== 0x0d) pos++;
      } else break;
    }
  };
  const readNumber = (name: string): number => {
    skipSpaceAndComments();
    let value = 0;
    let digits = 0;
    while (pos < bytes.length && (bytes[pos] as number) >= 0x30 && (bytes[pos] as number) <= 0x39) {
      value = value * 10 + ((bytes[pos] as number) - 0x30);
      pos++;
      digits++;
      if (digits > 9) throw fail(`${name} is implausibly large`);
    }
    if (digits === 0)
      throw fail(pos >= bytes.length ? `it ends before its ${name}` : `${name} is not a number`);
    return value;
  };

  const width = readNumber("width");
  const height = readNumber("height");
  const maxval = readNumber("maxval");
  if (width < 1 || height < 1) throw fail(`its size is ${width}x${height}`);
  if (maxval < 1 || maxval > 255) {
    throw fail(`maxval is ${maxval}; only 8-bit images (maxval 1..255) are read`);
  }
  if (width * height > maxPixels) {
    throw new IngestError(
      "TOO_LARGE",
      `${what}: ${width}x${height} pixels; at most ${maxPixels} pixels are decoded per image`,
    );
  }
  if (pos >= bytes.length || !WHITESPACE.has(bytes[pos] as number))
    throw fail("no whitespace after the header");
  pos++;

  const samples = width * height * channels;
  // Plain samples take at least two bytes each (digit + separator, the last one only one).
  const minimum = plain ? 2 * samples - 1 : samples;
  if (bytes.length - pos < minimum) {
    throw fail(`the raster is truncated (${bytes.length - pos} bytes for ${samples} samples)`);
  }
  const data = Buffer.allocUnsafe(samples);
  if (!plain) {
    data.set(bytes.subarray(pos, pos + samples));
    if (maxval !== 255) {
      for (let i = 0; i < samples; i++) {
        const v = data[i] as number;
        if (v > maxval) throw fail(`sample ${i} is ${v}, above maxval ${maxval}`);
        data[i] = Math.round((v * 255) / maxval);
      }
    }
    return { data, width, height, channels };
  }
  for (let i = 0; i < samples; i++) {
    const v = readNumber(`sample ${i}`);
    if (v > maxval) throw fail(`sample ${i} is ${v}, above maxval ${maxval}`);
    data[i] = maxval === 255 ? v : Math.round((v * 255) / maxval);
  }
  return { data, width, height, channels };
}
