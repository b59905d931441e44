import type { RawImage } from "./ppm.ts";

/**
 * Drops an alpha channel (C = 2 or 4) by copying the colour values (no compositing); C = 1 or 3
 * comes back as is; any other count is null. Both decoders (sharp's output and the PNG fast
 * path) go through it, so alpha means the same whichever decoded the file.
 */
export function withoutAlpha(data: Buffer, width: number, height: number, channels: number): RawImage | null {
  if (channels === 1 || channels === 3) return { data, width, height, channels };
  if (channels !== 2 && channels !== 4) return null;
  const keep = channels - 1;
  const pixels = width * height;
  const out = Buffer.allocUnsafe(pixels * keep);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels) {
    for (let c = 0; c < keep; c++) out[o++] = data[i + c] as number;
  }
  return { data: out, width, height, channels: keep as 1 | 3 };
}
