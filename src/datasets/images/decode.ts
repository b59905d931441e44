/**
 * One image file → uint8 H×W×C pixels, C = 1 (grey) or 3 (RGB), optionally cropped and resized.
 *
 * - Only PNG, JPEG and PPM/PGM are decoded, recognised by their first bytes; anything else
 *   (GIF, SVG, TIFF, ... even when named .png) is UNDECODABLE_IMAGE, so a hostile upload never
 *   reaches the other decoders libvips carries.
 * - PNG and JPEG go through sharp (libvips); PPM through ppm.ts; plain 8-bit PNGs through png.ts,
 *   which hands anything unusual back to sharp. Grey files (PNG colour types
 *   0 and 4, one-component JPEGs, P2/P5) decode to one channel, everything else to sRGB.
 *   Alpha is dropped (the stored colour values are kept, not composited); 16-bit samples are
 *   reduced to 8 bits by sharp; EXIF orientation is not applied (as Pillow/torchvision).
 * - Crop, then resize to exactly width×height (aspect ratio not kept) with Pillow's BILINEAR,
 *   byte for byte (resize.ts): widened by the shrink factor when downsizing (anti-aliased), as
 *   torchvision's Resize on a PIL image. An image already at the target size is not resampled.
 * - Decoding stops at MAX_SOURCE_PIXELS (TOO_LARGE), so a small file declaring a huge image
 *   costs nothing.
 */

import sharp from "sharp";
import { IngestError } from "../ingest-error.ts";
import type { ImageSize } from "../options.ts";
import { withoutAlpha } from "./alpha.ts";
import { decodePlainPng } from "./png.ts";
import { decodePpm, isPpm, type RawImage } from "./ppm.ts";
import { resizeBilinear } from "./resize.ts";

export type { RawImage } from "./ppm.ts";

/** 4096×4096: larger sources are refused before they are decoded. */
export const MAX_SOURCE_PIXELS = 1 << 24;
/** Largest image file read from an archive. */
export const MAX_IMAGE_FILE_BYTES = 64 << 20;

// Ingest never decodes the same file twice; libvips' operation cache would only hold memory.
sharp.cache(false);

export interface Crop {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface ImageTransform {
  crop?: Crop;
  resize?: ImageSize;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

type Encoding = "png" | "jpeg" | "ppm";

function encodingOf(bytes: Buffer): Encoding | null {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return "png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  if (isPpm(bytes)) return "ppm";
  return null;
}

/** Number of components a JPEG's frame header declares (1 = grey), or 0 when none is found. */
function jpegComponents(bytes: Buffer): number {
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) return 0;
    const marker = bytes[pos + 1] as number;
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    const length = bytes.readUInt16BE(pos + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) return pos + 9 < bytes.length ? (bytes[pos + 9] as number) : 0;
    pos += 2 + length;
  }
  return 0;
}

function isGrey(bytes: Buffer, encoding: "png" | "jpeg"): boolean {
  if (encoding === "png") return bytes.length > 25 && (bytes[25] === 0 || bytes[25] === 4);
  return jpegComponents(bytes) === 1;
}

function undecodable(what: string, why: string): IngestError {
  return new IngestError("UNDECODABLE_IMAGE", `${what}: cannot decode the image (${why})`);
}

/** The libvips path alone (exported so tests can hold the PNG fast path to it). */
export async function decodeWithSharp(
  bytes: Buffer,
  encoding: "png" | "jpeg",
  what: string,
): Promise<RawImage> {
  try {
    const { data, info } = await sharp(bytes, {
      limitInputPixels: MAX_SOURCE_PIXELS,
      failOn: "warning",
      autoOrient: false,
    })
      .toColourspace(isGrey(bytes, encoding) ? "b-w" : "srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    const image = withoutAlpha(data, info.width, info.height, info.channels);
    if (!image) throw undecodable(what, `${info.channels} channels`);
    return image;
  } catch (e) {
    const message = (e as Error).message.split("\n")[0] ?? "";
    if (/pixel limit/i.test(message)) {
      throw new IngestError(
        "TOO_LARGE",
        `${what}: the image has more than ${MAX_SOURCE_PIXELS} pixels, the most decoded per image`,
      );
    }
    throw undecodable(what, `${encoding.toUpperCase()}: ${message}`);
  }
}

/** Callers check the box against the image first (e.g. GTSRB against its CSV). */
function cropRaw(image: RawImage, crop: Crop, what: string): RawImage {
  const { left, top, width, height } = crop;
  if (
    left < 0 ||
    top < 0 ||
    width < 1 ||
    height < 1 ||
    left + width > image.width ||
    top + height > image.height
  ) {
    throw new RangeError(
      `${what}: the crop box ${width}x${height} at (${left}, ${top}) does not fit the ${image.width}x${image.height} image`,
    );
  }
  const c = image.channels;
  const out = Buffer.allocUnsafe(width * height * c);
  const rowBytes = width * c;
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * c;
    image.data.copy(out, y * rowBytes, from, from + rowBytes);
  }
  return { data: out, width, height, channels: c };
}

/** Decodes one PNG, JPEG or PPM file to 1 or 3 channels. */
export async function decodeImage(bytes: Buffer, what: string): Promise<RawImage> {
  const encoding = encodingOf(bytes);
  if (encoding === null) throw undecodable(what, "not a PNG, JPEG or PPM file");
  if (encoding === "png") {
    const plain = decodePlainPng(bytes, MAX_SOURCE_PIXELS);
    if (plain !== null) return plain;
  }
  return encoding === "ppm"
    ? decodePpm(bytes, what, MAX_SOURCE_PIXELS)
    : await decodeWithSharp(bytes, encoding, what);
}

/** Applies the crop, then the resize. */
export function transformImage(image: RawImage, transform: ImageTransform, what: string): RawImage {
  let out = image;
  if (transform.crop) out = cropRaw(out, transform.crop, what);
  if (transform.resize) out = resizeBilinear(out, transform.resize.width, transform.resize.height);
  return out;
}

/**
 * Converts to `channels`: grey → RGB repeats the value; RGB → grey is the ITU-R BT.601 luma
 * round((299 R + 587 G + 114 B) / 1000), halves rounding up.
 */
export function toChannels(image: RawImage, channels: 1 | 3): RawImage {
  if (image.channels === channels) return image;
  const pixels = image.width * image.height;
  const src = image.data;
  const out = Buffer.allocUnsafe(pixels * channels);
  if (channels === 3) {
    for (let p = 0, o = 0; p < pixels; p++) {
      const v = src[p] as number;
      out[o++] = v;
      out[o++] = v;
      out[o++] = v;
    }
  } else {
    for (let p = 0, i = 0; p < pixels; p++, i += 3) {
      out[p] = Math.floor(
        (299 * (src[i] as number) + 587 * (src[i + 1] as number) + 114 * (src[i + 2] as number) + 500) / 1000,
      );
    }
  }
  return { data: out, width: image.width, height: image.height, channels };
}
