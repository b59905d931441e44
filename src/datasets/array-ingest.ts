/**
 * Array formats (NPY_PAIR, NPZ, IDX) → a canonical dataset, streamed in chunks of at most 8 MiB
 * of image rows.
 *
 * Image arrays (any format):
 * - dtype uint8, taken as is; or float32/float64 (either byte order) with every value in
 *   [0, 1], converted by Math.round(x * 255) (halves round up); anything else, NaN included,
 *   is PIXEL_OUT_OF_RANGE. Other dtypes are UNSUPPORTED_DTYPE.
 * - shape N×H×W → C = 1; N×H×W×C with C in {1, 3} → as is; otherwise N×C×H×W with C in
 *   {1, 3} → transposed to N×H×W×C. The last dimension decides first: an array whose last
 *   dimension is 1 or 3 is always read as channels-last (so N×3×32×3 is 3×32 pixels, 3
 *   channels). Anything else is BAD_SHAPE. One image may take at most 16 MiB in its source
 *   dtype (TOO_LARGE).
 *
 * Label arrays: any integer dtype (u1 i1 u2 i2 u4 i4 u8 i8, either byte order), shape (N,) or
 * (N, 1) (Keras style). Negative labels, labels ≥ numClasses (when numClasses or classNames
 * is given) and labels that would imply more classes than images are refused. numClasses is
 * the given value, else classNames.length, else max(label) + 1; it must be at least 2.
 *
 * Limits: `maxBytes` (default 8 GiB) caps the uncompressed bytes of the two source arrays;
 * `maxCompressionRatio` (default 100) caps how far compressed NPZ members may expand.
 *
 */
import { endianness } from "node:os";
import type { CanonicalManifest } from "./canonical.ts";
import { CanonicalWriter, type CanonicalWriterOptions } from "./canonical-writer.ts";
import type { ArrayFormatReader, FormatLimits } from "./formats/index.ts";
import { type Dtype, type RawArray, readChunks, shapeText } from "./formats/raw-array.ts";
import { IngestError } from "./ingest-error.ts";

/** Source bytes of image rows read (and converted) at a time. */
const CHUNK_BYTES = 8 << 20;
const LABEL_CHUNK_BYTES = 256 << 10;
/** Largest single image accepted, in its source dtype. */
export const MAX_IMAGE_BYTES = 16 << 20;

const HOST_LITTLE_ENDIAN = endianness() === "LE";

export interface ImageLayout {
  count: number;
  height: number;
  width: number;
  channels: number;
  /** N×C×H×W in the source: transposed while copying */
  channelsFirst: boolean;
}

const isChannelCount = (n: number | undefined): n is number => n === 1 || n === 3;

/** The layout rule (see the module comment). */
export function imageLayout(array: Pick<RawArray, "shape" | "dtype" | "what">): ImageLayout {
  const { shape, dtype, what } = array;
  const isUint8 = dtype.kind === "u" && dtype.size === 1;
  const isFloat = dtype.kind === "f" && (dtype.size === 4 || dtype.size === 8);
  if (!isUint8 && !isFloat) {
    throw new IngestError(
      "UNSUPPORTED_DTYPE",
      `${what}: images must be uint8 (0..255) or float32/float64 in [0, 1], got ${dtype.name}; convert with array.astype(np.uint8)`,
    );
  }
  let layout: ImageLayout;
  const [n, a, b, d] = shape as [number, number, number, number | undefined];
  if (shape.length === 3) {
    layout = { count: n, height: a, width: b, channels: 1, channelsFirst: false };
  } else if (shape.length === 4 && isChannelCount(d)) {
    layout = { count: n, height: a, width: b, channels: d, channelsFirst: false };
  } else if (shape.length === 4 && isChannelCount(a)) {
    layout = { count: n, height: b, width: d as number, channels: a, channelsFirst: true };
  } else {
    throw new IngestError(
      "BAD_SHAPE",
      `${what}: shape ${shapeText(shape)} is not images; expected N×H×W, N×H×W×C or N×C×H×W with C = 1 (grey) or 3 (RGB)`,
    );
  }
  if (layout.count > 0 && (layout.height === 0 || layout.width === 0)) {
    throw new IngestError("BAD_SHAPE", `${what}: shape ${shapeText(shape)} has images with no pixels`);
  }
  return layout;
}

/** Checks the label array's dtype and shape; returns its count. */
export function labelCount(array: Pick<RawArray, "shape" | "dtype" | "what">): number {
  const { shape, dtype, what } = array;
  if (dtype.kind !== "u" && dtype.kind !== "i") {
    throw new IngestError(
      "UNSUPPORTED_DTYPE",
      `${what}: labels must be integers (class indices), got ${dtype.name}; convert with labels.astype(np.int64)`,
    );
  }
  if (!(shape.length === 1 || (shape.length === 2 && shape[1] === 1))) {
    const hint = shape.length === 2 ? " (one-hot? use labels.argmax(1))" : "";
    throw new IngestError(
      "BAD_SHAPE",
      `${what}: shape ${shapeText(shape)} is not one label per image; expected (N,) or (N, 1)${hint}`,
    );
  }
  return shape[0] as number;
}

/** Copies an array format's images and labels into a canonical dataset at `outDir`. */
export async function ingestArrays(
  reader: ArrayFormatReader,
  parts: Record<string, string>,
  limits: FormatLimits,
  classOptions: CanonicalWriterOptions,
  outDir: string,
): Promise<CanonicalManifest> {
  const dataset = await reader.open(parts, limits);
  let writer: CanonicalWriter | undefined;
  try {
    const { images, labels } = dataset;
    const layout = imageLayout(images);
    const labelTotal = labelCount(labels);
    if (layout.count !== labelTotal) {
      throw new IngestError(
        "COUNT_MISMATCH",
        `${images.what} has ${layout.count} images but ${labels.what} has ${labelTotal} labels; they must match one to one`,
      );
    }
    if (layout.count === 0) throw new IngestError("EMPTY", `${images.what} holds no images`);
    const sourceBytes = images.dataBytes + labels.dataBytes;
    if (sourceBytes > limits.maxBytes) {
      throw new IngestError(
        "TOO_LARGE",
        `the arrays hold ${sourceBytes} bytes; the limit is ${limits.maxBytes}`,
      );
    }
    const imageBytes = images.dataBytes / layout.count;
    if (imageBytes > MAX_IMAGE_BYTES) {
      throw new IngestError(
        "TOO_LARGE",
        `${images.what}: one image takes ${imageBytes} bytes; the limit is ${MAX_IMAGE_BYTES} (resize the images)`,
      );
    }
    writer = await CanonicalWriter.open(outDir, layout, classOptions, limits);
    await copyLabels(labels, writer);
    await copyImages(images, layout, writer);
    return await writer.finish({ sourceFormat: reader.name });
  } catch (e) {
    await writer?.abort();
    throw e;
  } finally {
    await dataset.close();
  }
}

async function copyLabels(labels: RawArray, writer: CanonicalWriter): Promise<void> {
  const { size, kind, littleEndian } = labels.dtype;
  const values = new Float64Array(Math.max(1, Math.floor(LABEL_CHUNK_BYTES / size)));
  const signed = kind === "i";
  for await (const chunk of readChunks(labels, size, LABEL_CHUNK_BYTES)) {
    const n = chunk.length / size;
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = 0; i < n; i++) {
      const at = i * size;
      let value: number;
      if (size === 1) value = signed ? view.getInt8(at) : view.getUint8(at);
      else if (size === 2)
        value = signed ? view.getInt16(at, littleEndian) : view.getUint16(at, littleEndian);
      else if (size === 4)
        value = signed ? view.getInt32(at, littleEndian) : view.getUint32(at, littleEndian);
      else {
        // 64-bit: high word (signed or not) * 2^32 + low word; exact below 2^53, and
        // anything larger is out of range anyway.
        const low = view.getUint32(littleEndian ? at : at + 4, littleEndian);
        const highAt = littleEndian ? at + 4 : at;
        const high = signed ? view.getInt32(highAt, littleEndian) : view.getUint32(highAt, littleEndian);
        value = high * 2 ** 32 + low;
      }
      values[i] = value;
    }
    await writer.appendLabels(values.subarray(0, n));
  }
}

function pixelError(what: string, value: number, image: number): IngestError {
  return new IngestError(
    "PIXEL_OUT_OF_RANGE",
    `${what}: image ${image} has the value ${value}; float images must lie in [0, 1] (divide 0..255 data by 255, or save it as uint8)`,
  );
}

/** float32/float64 → uint8 by Math.round(x * 255), refusing values outside [0, 1]. */
function floatsToUint8(
  chunk: Buffer,
  dtype: Dtype,
  out: Uint8Array,
  what: string,
  firstImage: number,
  imageElements: number,
): void {
  const n = chunk.length / dtype.size;
  const aligned = chunk.byteOffset % dtype.size === 0 && dtype.littleEndian === HOST_LITTLE_ENDIAN;
  if (aligned) {
    const floats =
      dtype.size === 4
        ? new Float32Array(chunk.buffer, chunk.byteOffset, n)
        : new Float64Array(chunk.buffer, chunk.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const x = floats[i] as number;
      if (!(x >= 0 && x <= 1)) throw pixelError(what, x, firstImage + Math.floor(i / imageElements));
      out[i] = Math.round(x * 255);
    }
    return;
  }
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const le = dtype.littleEndian;
  for (let i = 0; i < n; i++) {
    const x = dtype.size === 4 ? view.getFloat32(i * 4, le) : view.getFloat64(i * 8, le);
    if (!(x >= 0 && x <= 1)) throw pixelError(what, x, firstImage + Math.floor(i / imageElements));
    out[i] = Math.round(x * 255);
  }
}

/** rows of C×H×W → rows of H×W×C */
function channelsLast(
  src: Uint8Array,
  dst: Uint8Array,
  rows: number,
  channels: number,
  pixels: number,
): void {
  const elements = channels * pixels;
  for (let r = 0; r < rows; r++) {
    const base = r * elements;
    for (let c = 0; c < channels; c++) {
      const plane = base + c * pixels;
      let o = base + c;
      for (let p = 0; p < pixels; p++, o += channels) dst[o] = src[plane + p] as number;
    }
  }
}

async function copyImages(images: RawArray, layout: ImageLayout, writer: CanonicalWriter): Promise<void> {
  const { dtype } = images;
  const pixels = layout.height * layout.width;
  const imageElements = pixels * layout.channels;
  const rowBytes = imageElements * dtype.size;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
  const chunkElements = Math.min(rowsPerChunk, layout.count) * imageElements;
  const isFloat = dtype.kind === "f";
  const converted = isFloat ? new Uint8Array(chunkElements) : null;
  const transposed = layout.channelsFirst && layout.channels > 1 ? new Uint8Array(chunkElements) : null;
  let image = 0;
  for await (const chunk of readChunks(images, rowBytes, CHUNK_BYTES)) {
    const rows = chunk.length / rowBytes;
    let bytes: Uint8Array = chunk;
    if (converted !== null) {
      floatsToUint8(chunk, dtype, converted, images.what, image, imageElements);
      bytes = converted;
    }
    if (transposed !== null) {
      channelsLast(bytes, transposed, rows, layout.channels, pixels);
      bytes = transposed;
    }
    await writer.appendImages(bytes.subarray(0, rows * imageElements));
    image += rows;
  }
}
