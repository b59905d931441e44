/**
 * A dataset's first images, read from its canonical images.npy (uint8, N×H×W×C) through the
 * public download URL: only the header and the first images' bytes are read, then the
 * transfer is cancelled, so a 50 MB set costs a few kilobytes.
 */
export interface ImagesHead {
  height: number;
  width: number;
  channels: number;
  images: Uint8Array[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Reads from `url` until `enough(bytes)` says how many bytes it needs and they have arrived. */
async function readPrefix(url: string, need: (head: Uint8Array) => number | undefined): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  const reader = res.body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const wanted = need(buffer);
    if (wanted !== undefined && buffer.length >= wanted) {
      await reader.cancel();
      return buffer.subarray(0, wanted);
    }
    const { done, value } = await reader.read();
    if (done) return buffer;
    const next = new Uint8Array(buffer.length + value.length);
    next.set(buffer);
    next.set(value, buffer.length);
    buffer = next;
  }
}

export function parseHeader(
  bytes: Uint8Array,
): { offset: number; shape: number[]; descr: string } | undefined {
  if (bytes.length < 12) return undefined;
  if (!MAGIC.every((b, i) => bytes[i] === b)) throw new Error("not an NPY file");
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerStart = major === 1 ? 10 : 12;
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (bytes.length < headerStart + headerLength) return undefined;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1] ?? "";
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  return { offset: headerStart + headerLength, shape, descr };
}

export async function readFirstImages(url: string, count: number): Promise<ImagesHead> {
  let layout: { offset: number; shape: number[] } | undefined;
  const bytes = await readPrefix(url, (head) => {
    layout ??= parseHeader(head);
    if (!layout) return undefined;
    const [n = 0, h = 0, w = 0, c = 1] = layout.shape;
    return layout.offset + Math.min(count, n) * h * w * c;
  });
  if (!layout) throw new Error("images.npy ended inside its header");
  const [n = 0, height = 0, width = 0, channels = 1] = layout.shape;
  const size = height * width * channels;
  const images = [];
  for (let i = 0; i < Math.min(count, n); i++)
    images.push(bytes.subarray(layout.offset + i * size, layout.offset + (i + 1) * size));
  return { height, width, channels, images };
}

/** Paints one HWC uint8 image (1 or 3 channels) onto a canvas. */
export function paint(
  canvas: HTMLCanvasElement,
  image: Uint8Array,
  height: number,
  width: number,
  channels: number,
): void {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  if (!context) return;
  const pixels = context.createImageData(width, height);
  for (let p = 0; p < height * width; p++) {
    const r = image[p * channels] ?? 0;
    pixels.data[p * 4] = r;
    pixels.data[p * 4 + 1] = channels === 3 ? (image[p * 3 + 1] ?? 0) : r;
    pixels.data[p * 4 + 2] = channels === 3 ? (image[p * 3 + 2] ?? 0) : r;
    pixels.data[p * 4 + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
}
