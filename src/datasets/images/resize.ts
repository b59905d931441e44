/**
 * Bilinear resize, byte for byte Pillow's `Image.resize(size, Image.BILINEAR)` on 8-bit images
 * (its Resample.c), which is what torchvision's `Resize` does to a PIL image: a triangle filter
 * widened by the scale when shrinking (anti-aliased), weights in 22-bit fixed point, the
 * horizontal pass first (rounded to 8 bits), then the vertical one. The aspect ratio is not kept.
 *
 * Written here rather than called through libvips because a libvips pipeline costs ~0.7 ms to
 * set up per image, ten times the work itself at GTSRB's sizes (bench/RESULTS.md).
 * tests/datasets/resize.test.ts holds it to Pillow.
 */

import type { RawImage } from "./ppm.ts";

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const CEILING = 255 << PRECISION_BITS;

interface Coefficients {
  /** taps per output pixel (the same for every pixel; unused taps weigh 0) */
  taps: number;
  /** first input index of each output pixel */
  first: Int32Array;
  /** number of input pixels each output pixel reads */
  count: Int32Array;
  /** fixed-point weights, `taps` per output pixel */
  weights: Int32Array;
}

function triangle(x: number): number {
  const a = x < 0 ? -x : x;
  return a < 1 ? 1 - a : 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the whole input range. */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = filterScale; // the triangle's support is 1
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  const k = new Float64Array(taps);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = triangle((x + xmin - center + 0.5) * ss);
      k[x] = w;
      total += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? (k[x] as number) / total : (k[x] as number);
      const fixed = w * (1 << PRECISION_BITS);
      weights[xx * taps + x] = w < 0 ? Math.trunc(-0.5 + fixed) : Math.trunc(0.5 + fixed);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { taps, first, count, weights };
}

function clip8(sum: number): number {
  if (sum >= CEILING) return 255;
  if (sum <= 0) return 0;
  return sum >> PRECISION_BITS;
}

/** Resizes an H×W×C uint8 image to width×height; an image already that size is returned as is. */
export function resizeBilinear(image: RawImage, width: number, height: number): RawImage {
  const { width: inW, height: inH, channels: c } = image;
  if (inW === width && inH === height) return image;
  const horizontal = coefficients(inW, width);
  const vertical = coefficients(inH, height);
  // Only the input rows the vertical pass reads go through the horizontal pass.
  const rowFirst = vertical.first[0] as number;
  const rowEnd = (vertical.first[height - 1] as number) + (vertical.count[height - 1] as number);
  let rows = image.data;
  let rowsHeight = inH;
  let rowOffset = 0;
  if (inW !== width) {
    rowsHeight = rowEnd - rowFirst;
    rowOffset = rowFirst;
    rows = Buffer.allocUnsafe(rowsHeight * width * c);
    const { taps, first, count, weights } = horizontal;
    const src = image.data;
    for (let y = 0; y < rowsHeight; y++) {
      const inRow = (y + rowFirst) * inW * c;
      const outRow = y * width * c;
      for (let xx = 0; xx < width; xx++) {
        const start = inRow + (first[xx] as number) * c;
        const n = count[xx] as number;
        const w0 = xx * taps;
        for (let ch = 0; ch < c; ch++) {
          let sum = HALF;
          for (let x = 0; x < n; x++)
            sum += (src[start + x * c + ch] as number) * (weights[w0 + x] as number);
          rows[outRow + xx * c + ch] = clip8(sum);
        }
      }
    }
  }
  if (inH === height) return { data: rows, width, height, channels: c };
  const out = Buffer.allocUnsafe(height * width * c);
  const { taps, first, count, weights } = vertical;
  const stride = width * c;
  for (let yy = 0; yy < height; yy++) {
    const start = ((first[yy] as number) - rowOffset) * stride;
    const n = count[yy] as number;
    const w0 = yy * taps;
    const outRow = yy * stride;
    for (let i = 0; i < stride; i++) {
      let sum = HALF;
      for (let y = 0; y < n; y++)
        sum += (rows[start + y * stride + i] as number) * (weights[w0 + y] as number);
      out[outRow + i] = clip8(sum);
    }
  }
  return { data: out, width, height, channels: c };
}
