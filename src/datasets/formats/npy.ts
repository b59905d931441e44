/**
 * NPY arrays (numpy's `.npy`, format versions 1.0, 2.0 and 3.0), read as a stream, plus the
 * pieces every format reader shares: `ByteSource` (bounded reads from a file or a stream),
 * `Dtype`, `RawArray` (a decoded header + its data still on disk) and `readChunks`.
 *
 * The `NPY_PAIR` format is two `.npy` files: parts `images` and `labels`.
 *
 * Rules:
 * - object dtypes ('|O', or any structured dtype with an 'O' field) are pickles and are
 *   refused before a single data byte is read (PICKLE_NOT_ALLOWED); so is a pickle file.
 * - `fortran_order: True` is refused (UNSUPPORTED_LAYOUT) unless at most one dimension is
 *   larger than 1, where both orders are the same bytes (e.g. every 1-D label array).
 *   Transposing a column-major image array needs strided reads across the whole file;
 *   `np.ascontiguousarray(a)` before `np.save` fixes it at the source.
 * - the file must hold exactly the bytes the header promises (TRUNCATED / TRAILING_DATA).
 */

import type { FileHandle } from "node:fs/promises";
import { open, stat } from "node:fs/promises";
import { basename } from "node:path";
import type { Readable } from "node:stream";
import { IngestError } from "../canonical.ts";
import type { ArrayFormatReader, FormatLimits, OpenedDataset } from "./index.ts";

// ---------------------------------------------------------------------------------------------
// Byte sources

/** Sequential reads with a caller-owned buffer, so steady-state streaming allocates nothing. */
export interface ByteSource {
  /** Fills target[offset, offset + length); returns fewer bytes only at the end of the data. */
  read(target: Uint8Array, offset: number, length: number): Promise<number>;
  /** Releases the file or stream; safe to call more than once. */
  close(): Promise<void>;
}

/** Reads `file` from `position` up to `end` (default: its end); closes the file on close(). */
export function fileSource(file: FileHandle, position: number, end = Number.POSITIVE_INFINITY): ByteSource {
  let pos = position;
  let closed = false;
  return {
    async read(target, offset, length) {
      let n = 0;
      const want = Math.max(0, Math.min(length, end - pos));
      while (n < want) {
        const { bytesRead } = await file.read(target, offset + n, want - n, pos);
        if (bytesRead === 0) break;
        n += bytesRead;
        pos += bytesRead;
      }
      return n;
    },
    async close() {
      if (closed) return;
      closed = true;
      await file.close();
    },
  };
}

/** Reads a Readable through its async iterator; close() destroys the stream. */
export function streamSource(stream: Readable, mapError: (error: unknown) => Error): ByteSource {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let pending: Buffer | null = null;
  let ended = false;
  let closed = false;
  return {
    async read(target, offset, length) {
      let n = 0;
      while (n < length) {
        if (pending === null || pending.length === 0) {
          if (ended || closed) break;
          let next: IteratorResult<Buffer>;
          try {
            next = await iterator.next();
          } catch (e) {
            throw e instanceof IngestError ? e : mapError(e);
          }
          if (next.done) {
            ended = true;
            break;
          }
          pending = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
          continue;
        }
        const k = Math.min(pending.length, length - n);
        pending.copy(target, offset + n, 0, k);
        pending = pending.subarray(k);
        n += k;
      }
      return n;
    },
    async close() {
      if (closed) return;
      closed = true;
      pending = null;
      if (!ended) await iterator.return?.().catch(() => undefined);
      stream.destroy();
    },
  };
}

/**
 * Wraps a source to see every byte read (`onData`, e.g. a CRC) and to run `onEnd` once when
 * the data is exhausted (which may throw, e.g. on a CRC mismatch).
 */
export function observedSource(
  source: ByteSource,
  hooks: { onData: (bytes: Uint8Array) => void; onEnd: () => void },
): ByteSource {
  let ended = false;
  return {
    async read(target, offset, length) {
      const n = await source.read(target, offset, length);
      if (n > 0) hooks.onData(target.subarray(offset, offset + n));
      if (n < length && !ended) {
        ended = true;
        hooks.onEnd();
      }
      return n;
    },
    close: () => source.close(),
  };
}

/** Reads exactly `length` bytes or fails with TRUNCATED. */
export async function readExactly(
  source: ByteSource,
  length: number,
  what: string,
  part: string,
): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const n = await source.read(buffer, 0, length);
  if (n < length) {
    throw new IngestError("TRUNCATED", `${what}: the file ends inside its ${part} (${n} of ${length} bytes)`);
  }
  return buffer;
}

// ---------------------------------------------------------------------------------------------
// Element types and arrays

export interface Dtype {
  /** unsigned, signed, float, bool */
  kind: "u" | "i" | "f" | "b";
  /** bytes per element */
  size: number;
  littleEndian: boolean;
  /** for messages, e.g. "uint8", ">f4" */
  name: string;
}

const DTYPE_NAMES: Record<string, string> = {
  u1: "uint8",
  i1: "int8",
  b1: "bool",
  u2: "uint16",
  i2: "int16",
  u4: "uint32",
  i4: "int32",
  u8: "uint64",
  i8: "int64",
  f2: "float16",
  f4: "float32",
  f8: "float64",
};

export function makeDtype(kind: Dtype["kind"], size: number, littleEndian: boolean): Dtype {
  const base = DTYPE_NAMES[`${kind}${size}`] ?? `${kind}${size}`;
  const name = size === 1 ? base : `${littleEndian ? "little" : "big"}-endian ${base}`;
  return { kind, size, littleEndian, name };
}

/** A decoded array header and its data, not yet read: `source` is positioned at the first data byte. */
export interface RawArray {
  /** what the array is, for messages: e.g. "images (train.npy)" */
  what: string;
  dtype: Dtype;
  shape: number[];
  /** product(shape) * dtype.size */
  dataBytes: number;
  source: ByteSource;
}

export function shapeText(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}

/** product(shape) * itemSize, or TOO_LARGE when that is not a safe integer. */
export function arrayBytes(shape: readonly number[], itemSize: number, what: string): number {
  let total = itemSize;
  for (const dim of shape) total *= dim;
  if (!Number.isSafeInteger(total)) {
    throw new IngestError("TOO_LARGE", `${what}: shape ${shapeText(shape)} is too large`);
  }
  return total;
}

/**
 * Yields the array's data in chunks whose lengths are multiples of `unit` bytes (at most
 * max(unit, maxChunk) bytes each). The yielded buffer is reused: consume it before asking for
 * the next. Fails with TRUNCATED when the data stops early and TRAILING_DATA when more follows.
 */
export async function* readChunks(array: RawArray, unit: number, maxChunk: number): AsyncGenerator<Buffer> {
  const perChunk = Math.max(unit, Math.floor(maxChunk / unit) * unit);
  const buffer = Buffer.alloc(Math.min(perChunk, Math.max(array.dataBytes, 1)));
  let done = 0;
  while (done < array.dataBytes) {
    const want = Math.min(buffer.length, array.dataBytes - done);
    const n = await array.source.read(buffer, 0, want);
    if (n < want) {
      throw new IngestError(
        "TRUNCATED",
        `${array.what}: the header promises ${array.dataBytes} bytes of data (shape ${shapeText(array.shape)}, ${array.dtype.name}) but the file holds only ${done + n}; the upload is incomplete`,
      );
    }
    done += n;
    yield buffer.subarray(0, n);
  }
  const probe = Buffer.alloc(1);
  if ((await array.source.read(probe, 0, 1)) > 0) {
    throw new IngestError(
      "TRAILING_DATA",
      `${array.what}: more bytes follow the ${array.dataBytes} bytes of data the header promises (shape ${shapeText(array.shape)}, ${array.dtype.name}); the file is not a single array`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Sniffing

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

/** A hint naming what a file looks like when it is not what was expected, or null. */
export function sniff(bytes: Uint8Array): string | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (b.length >= 6 && b.subarray(0, 6).equals(NPY_MAGIC)) return "it is an NPY file (use format NPY_PAIR)";
  if (
    b.length >= 4 &&
    b[0] === 0x50 &&
    b[1] === 0x4b &&
    (b[2] === 3 || b[2] === 5) &&
    (b[3] === 4 || b[3] === 6)
  ) {
    return "it is a zip archive (an .npz? use format NPZ)";
  }
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return "it is gzip-compressed";
  if (b.length >= 2 && b[0] === 0x80 && (b[1] ?? 0) <= 5) return "it is a Python pickle";
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && [8, 9, 11, 12, 13, 14].includes(b[2] ?? 0)) {
    return "it looks like an IDX file (use format IDX)";
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// NPY header

/** A Python literal as found in NPY headers. */
type PyValue = string | number | boolean | null | PyValue[] | { tuple: PyValue[] } | Map<PyValue, PyValue>;

class LiteralParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parseAll(): PyValue {
    const value = this.value();
    this.skip();
    if (this.pos !== this.text.length)
      throw new Error(`unexpected ${JSON.stringify(this.text.slice(this.pos, this.pos + 10))}`);
    return value;
  }

  private skip(): void {
    while (this.pos < this.text.length && " \t\r\n".includes(this.text[this.pos] as string)) this.pos++;
  }

  private value(): PyValue {
    this.skip();
    const c = this.text[this.pos];
    if (c === "{") return this.dict();
    if (c === "(") return { tuple: this.sequence("(", ")") };
    if (c === "[") return this.sequence("[", "]");
    if (c === "'" || c === '"') return this.string();
    if ((c === "u" || c === "b") && (this.text[this.pos + 1] === "'" || this.text[this.pos + 1] === '"')) {
      this.pos++;
      return this.string();
    }
    const word = /^(True|False|None|-?\d+L?)/.exec(this.text.slice(this.pos, this.pos + 40));
    if (word === null)
      throw new Error(`unexpected ${JSON.stringify(this.text.slice(this.pos, this.pos + 10))}`);
    this.pos += (word[1] as string).length;
    const w = word[1] as string;
    if (w === "True") return true;
    if (w === "False") return false;
    if (w === "None") return null;
    const n = Number(w.replace("L", ""));
    if (!Number.isSafeInteger(n)) throw new Error(`integer ${w} is too large`);
    return n;
  }

  private string(): string {
    const quote = this.text[this.pos];
    this.pos++;
    let out = "";
    while (this.pos < this.text.length && this.text[this.pos] !== quote) {
      if (this.text[this.pos] === "\\") this.pos++;
      out += this.text[this.pos] ?? "";
      this.pos++;
    }
    if (this.pos >= this.text.length) throw new Error("unterminated string");
    this.pos++;
    return out;
  }

  private sequence(open: string, close: string): PyValue[] {
    this.pos++; // open
    const items: PyValue[] = [];
    for (;;) {
      this.skip();
      if (this.text[this.pos] === close) {
        this.pos++;
        return items;
      }
      items.push(this.value());
      this.skip();
      if (this.text[this.pos] === ",") this.pos++;
      else if (this.text[this.pos] !== close) throw new Error(`expected ',' or '${close}' after ${open}...`);
    }
  }

  private dict(): Map<PyValue, PyValue> {
    this.pos++;
    const map = new Map<PyValue, PyValue>();
    for (;;) {
      this.skip();
      if (this.text[this.pos] === "}") {
        this.pos++;
        return map;
      }
      const key = this.value();
      this.skip();
      if (this.text[this.pos] !== ":") throw new Error("expected ':' in dict");
      this.pos++;
      const value = this.value();
      if (map.has(key)) throw new Error(`duplicate key ${String(key)}`);
      map.set(key, value);
      this.skip();
      if (this.text[this.pos] === ",") this.pos++;
      else if (this.text[this.pos] !== "}") throw new Error("expected ',' or '}' in dict");
    }
  }
}

/** True when a (possibly structured) descr mentions an object ('O') field type. */
function hasObjectField(descr: PyValue): boolean {
  if (typeof descr === "string") return /O/.test(descr);
  if (Array.isArray(descr)) {
    return descr.some((field) => {
      // structured fields are (name, type) or (name, type, shape); names are not types
      const items = Array.isArray(field)
        ? field
        : typeof field === "object" && field !== null && "tuple" in field
          ? field.tuple
          : [];
      const type = items[1];
      return type !== undefined && hasObjectField(type);
    });
  }
  return false;
}

/** Parses a simple (non-structured) NPY descr such as '<f4' or '|u1'. */
export function parseDescr(descr: PyValue, what: string): Dtype {
  if (hasObjectField(descr)) {
    throw new IngestError(
      "PICKLE_NOT_ALLOWED",
      `${what}: the array holds Python objects (dtype ${JSON.stringify(descr)}), which numpy stores as a pickle; pickles are never loaded. Convert to a numeric array (e.g. np.stack(list).astype(np.uint8)) and save again`,
    );
  }
  if (typeof descr !== "string") {
    throw new IngestError(
      "UNSUPPORTED_DTYPE",
      `${what}: structured dtypes are not supported; save plain numeric arrays`,
    );
  }
  const m = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  const kind = m?.[2];
  const size = Number(m?.[3]);
  if (
    m === null ||
    kind === undefined ||
    !["u", "i", "f", "b"].includes(kind) ||
    ![1, 2, 4, 8].includes(size)
  ) {
    throw new IngestError(
      "UNSUPPORTED_DTYPE",
      `${what}: dtype ${JSON.stringify(descr)} is not a supported numeric type`,
    );
  }
  // '|' (not applicable) only appears on 1-byte types; '=' (native) is never written by numpy.
  const littleEndian = m[1] !== ">";
  return makeDtype(kind as Dtype["kind"], size, littleEndian);
}

export interface NpyHeader {
  dtype: Dtype;
  shape: number[];
  fortranOrder: boolean;
  /** bytes before the data */
  headerBytes: number;
}

const MAX_NPY_HEADER = 1 << 20;

/** Reads and checks an NPY header from the start of `source`. */
export async function parseNpyHeader(source: ByteSource, what: string): Promise<NpyHeader> {
  const preamble = Buffer.alloc(8);
  const got = await source.read(preamble, 0, 8);
  if (got < 8 || !preamble.subarray(0, 6).equals(NPY_MAGIC)) {
    const hint = sniff(preamble.subarray(0, got));
    if (hint === "it is a Python pickle") {
      throw new IngestError(
        "PICKLE_NOT_ALLOWED",
        `${what}: the file is a Python pickle, not an NPY array; pickles are never loaded. Save with np.save(path, array)`,
      );
    }
    throw new IngestError(
      "BAD_HEADER",
      `${what}: not an NPY file (it does not start with \\x93NUMPY${hint ? `; ${hint}` : ""})`,
    );
  }
  const major = preamble[6];
  if (major !== 1 && major !== 2 && major !== 3) {
    throw new IngestError(
      "BAD_HEADER",
      `${what}: NPY format version ${major}.${preamble[7]} is not supported`,
    );
  }
  const lengthBytes = await readExactly(source, major === 1 ? 2 : 4, what, "header");
  const headerLength = major === 1 ? lengthBytes.readUInt16LE(0) : lengthBytes.readUInt32LE(0);
  if (headerLength > MAX_NPY_HEADER) {
    throw new IngestError("BAD_HEADER", `${what}: NPY header of ${headerLength} bytes is implausibly long`);
  }
  const raw = await readExactly(source, headerLength, what, "header");
  const text = raw.toString(major === 3 ? "utf8" : "latin1");
  let dict: PyValue;
  try {
    dict = new LiteralParser(text).parseAll();
  } catch (e) {
    throw new IngestError(
      "BAD_HEADER",
      `${what}: the NPY header is not a valid dictionary (${(e as Error).message})`,
    );
  }
  if (!(dict instanceof Map))
    throw new IngestError("BAD_HEADER", `${what}: the NPY header is not a dictionary`);
  const keys = [...dict.keys()].map(String).sort();
  if (keys.join(",") !== "descr,fortran_order,shape") {
    throw new IngestError(
      "BAD_HEADER",
      `${what}: the NPY header must have exactly the keys descr, fortran_order, shape; found ${keys.join(", ")}`,
    );
  }
  const descr = dict.get("descr") as PyValue;
  const fortranOrder = dict.get("fortran_order");
  const shapeValue = dict.get("shape");
  if (typeof fortranOrder !== "boolean")
    throw new IngestError("BAD_HEADER", `${what}: fortran_order must be True or False`);
  const shapeItems =
    typeof shapeValue === "object" && shapeValue !== null && "tuple" in shapeValue ? shapeValue.tuple : null;
  if (shapeItems === null || !shapeItems.every((d) => typeof d === "number" && d >= 0)) {
    throw new IngestError("BAD_HEADER", `${what}: shape must be a tuple of non-negative integers`);
  }
  const shape = shapeItems as number[];
  const dtype = parseDescr(descr, what);
  if (fortranOrder && shape.filter((d) => d > 1).length > 1) {
    throw new IngestError(
      "UNSUPPORTED_LAYOUT",
      `${what}: the array is stored in Fortran (column-major) order; save it in C order with np.save(path, np.ascontiguousarray(array))`,
    );
  }
  return { dtype, shape, fortranOrder, headerBytes: 6 + 2 + lengthBytes.length + headerLength };
}

/**
 * Opens a `.npy` file: parses its header and checks the file size against it, so truncation
 * and trailing bytes are reported before any data is read.
 */
export async function openNpyFile(path: string, what: string): Promise<RawArray> {
  const label = `${what} (${basename(path)})`;
  const file = await open(path, "r");
  const source = fileSource(file, 0);
  try {
    const { size } = await stat(path);
    const header = await parseNpyHeader(source, label);
    const dataBytes = arrayBytes(header.shape, header.dtype.size, label);
    const expected = header.headerBytes + dataBytes;
    if (size < expected) {
      throw new IngestError(
        "TRUNCATED",
        `${label}: the header promises ${dataBytes} bytes of data (shape ${shapeText(header.shape)}, ${header.dtype.name}) but the file holds only ${size - header.headerBytes}; the upload is incomplete`,
      );
    }
    if (size > expected) {
      throw new IngestError(
        "TRAILING_DATA",
        `${label}: ${size - expected} bytes follow the data the header promises (shape ${shapeText(header.shape)}, ${header.dtype.name}); the file is not a single array`,
      );
    }
    return { what: label, dtype: header.dtype, shape: header.shape, dataBytes, source };
  } catch (e) {
    await source.close();
    throw e;
  }
}

/** Opens several arrays; if one fails, closes those already open. */
export async function openAll(openers: Array<() => Promise<RawArray>>): Promise<RawArray[]> {
  const opened: RawArray[] = [];
  try {
    for (const opener of openers) opened.push(await opener());
    return opened;
  } catch (e) {
    await Promise.all(opened.map((a) => a.source.close().catch(() => undefined)));
    throw e;
  }
}

export const npyPairFormat: ArrayFormatReader = {
  kind: "arrays",
  name: "NPY_PAIR",
  options: [],
  parts: ["images", "labels"],
  description: "two .npy files: images (uint8 or float in [0,1]) and integer labels",
  async open(parts: Record<string, string>, _limits: FormatLimits): Promise<OpenedDataset> {
    const [images, labels] = await openAll([
      () => openNpyFile(parts.images as string, "images"),
      () => openNpyFile(parts.labels as string, "labels"),
    ]);
    return datasetOf(images as RawArray, labels as RawArray);
  },
};

export function datasetOf(images: RawArray, labels: RawArray, onClose?: () => Promise<void>): OpenedDataset {
  return {
    images,
    labels,
    async close() {
      await Promise.all([images.source.close(), labels.source.close()]);
      await onClose?.();
    },
  };
}
