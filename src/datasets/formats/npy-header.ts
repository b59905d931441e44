/**
 * NPY headers (numpy's `.npy`, format versions 1.0, 2.0 and 3.0): the magic, the version, the
 * header length and a Python dict literal, parsed here without ever evaluating it. Object
 * dtypes (pickles) are refused before a single data byte is read.
 */

import { IngestError } from "../ingest-error.ts";
import { type ByteSource, readExactly } from "./byte-source.ts";
import { type Dtype, makeDtype } from "./raw-array.ts";
import { NPY_MAGIC, sniff } from "./sniff.ts";

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
