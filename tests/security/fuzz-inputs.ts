/**
 * Structure-aware inputs for the ingest fuzzers: each starts from a well-formed file of its
 * format (built by the dataset fixtures, independently of the code under test) and then lies
 * about it: wrong dtypes and shapes, huge declared sizes, unsafe member names, links, devices,
 * duplicate and nested archives, and finally a few byte-level mutations (truncation, flips,
 * overwritten length fields, inserted and repeated runs).
 */

import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { pngBytes, type TarType, tarBytes } from "../datasets/archives.ts";
import { encode, idxBytes, npyBytes, pattern, type ZipMember, zipBytes } from "../datasets/helpers.ts";

type ValueOf<A> = A extends fc.Arbitrary<infer T> ? T : never;

// ---------------------------------------------------------------------------------------------
// Byte-level mutations

export type Mutation =
  | { op: "truncate"; at: number }
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; value: number }
  | { op: "u32"; at: number; value: number; le: boolean }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "remove"; at: number; length: number }
  | { op: "append"; bytes: Uint8Array }
  | { op: "repeat"; at: number; length: number; times: number };

/** Headers live at the start of most files, so positions favour the first bytes. */
const position = fc.oneof(fc.integer({ min: 0, max: 80 }), fc.nat());
const BYTES = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x30, 0x39, 0x20, 0x0a];
const U32S = [0, 1, 2, 3, 0x7f, 0xff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("truncate" as const), at: position }),
  fc.record({ op: fc.constant("flip" as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({
    op: fc.constant("set" as const),
    at: position,
    value: fc.oneof(fc.constantFrom(...BYTES), fc.integer({ min: 0, max: 255 })),
  }),
  fc.record({
    op: fc.constant("u32" as const),
    at: position,
    value: fc.oneof(fc.constantFrom(...U32S), fc.nat()),
    le: fc.boolean(),
  }),
  fc.record({ op: fc.constant("insert" as const), at: position, bytes: fc.uint8Array({ maxLength: 16 }) }),
  fc.record({ op: fc.constant("remove" as const), at: position, length: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 600 }) }),
  fc.record({
    op: fc.constant("repeat" as const),
    at: position,
    length: fc.integer({ min: 1, max: 64 }),
    times: fc.integer({ min: 1, max: 4 }),
  }),
);

/** Most cases keep the structure and lie in it; a third also get their bytes mangled. */
export const mutationsArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Mutation[]>([]) },
  { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) },
);

export function applyMutations(input: Uint8Array, mutations: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const at = m.op === "append" ? b.length : m.at % (b.length + 1);
    switch (m.op) {
      case "truncate":
        b = b.subarray(0, at);
        break;
      case "flip":
        if (at < b.length) b[at] = (b[at] as number) ^ (1 << m.bit);
        break;
      case "set":
        if (at < b.length) b[at] = m.value;
        break;
      case "u32":
        if (at + 4 <= b.length) {
          if (m.le) b.writeUInt32LE(m.value >>> 0, at);
          else b.writeUInt32BE(m.value >>> 0, at);
        }
        break;
      case "insert":
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case "remove":
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
        break;
      case "append":
        b = Buffer.concat([b, m.bytes]);
        break;
      case "repeat": {
        const run = b.subarray(at, at + m.length);
        b = Buffer.concat([
          b.subarray(0, at),
          ...Array.from({ length: m.times + 1 }, () => run),
          b.subarray(at),
        ]);
        break;
      }
    }
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// NPY

const IMAGE_DESCRS = ["|u1", "<f4", ">f8"];
const LABEL_DESCRS = ["<i8", "|u1", ">i2", "<u4"];
const ODD_DESCRS = ["<f2", "<c8", "|b1", "|O", "|O8", "<U4", "|V8", "<M8[s]", "|S3", "u1", "<i16", "", "'"];
/** Sizes that overflow, exceed limits or lie about the file. */
const HUGE_DIMS = [2 ** 16, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2 ** 53, 1e21];

const smallDim = fc.integer({ min: 0, max: 4 });
const dimArb = fc.oneof(
  { weight: 4, arbitrary: smallDim },
  { weight: 1, arbitrary: fc.constantFrom(...HUGE_DIMS, -1) },
);

/** An image shape for n images: mostly N×H×W(×C) or N×C×H×W, sometimes anything. */
function imageShapeArb(n: number): fc.Arbitrary<number[]> {
  const side = fc.integer({ min: 1, max: 4 });
  const channels = fc.constantFrom(1, 3);
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(side, side).map(([h, w]) => [n, h, w]) },
    { weight: 4, arbitrary: fc.tuple(side, side, channels).map(([h, w, c]) => [n, h, w, c]) },
    { weight: 4, arbitrary: fc.tuple(channels, side, side).map(([c, h, w]) => [n, c, h, w]) },
    { weight: 1, arbitrary: fc.array(dimArb, { maxLength: 6 }) },
    { weight: 1, arbitrary: fc.array(smallDim, { minLength: 20, maxLength: 40 }) },
  );
}

function labelShapeArb(n: number): fc.Arbitrary<number[]> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant<number[]>([n]) },
    { weight: 2, arbitrary: fc.constant<number[]>([n, 1]) },
    { weight: 1, arbitrary: fc.array(dimArb, { maxLength: 3 }) },
  );
}

/** Images in an array case: mostly enough for two classes, sometimes none or one. */
const countArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 2, max: 4 }) },
  fc.integer({ min: 0, max: 1 }),
);

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Header dicts that are not what np.save writes: code, unbalanced, huge numbers, other keys. */
const oddDictArb = fc.oneof(
  fc.constantFrom(
    "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 3), ",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 3), 'shape': (1,), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': 5, }",
    "{'descr': '|u1', 'fortran_order': None, 'shape': (), }",
    "{'descr': ['<u1'], 'fortran_order': False, 'shape': (1,), }",
    "{'descr': [('a', '|u1'), ('b', '<f4', (2,))], 'fortran_order': False, 'shape': (1,), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999999, 1), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': ((((((((((((((((1,),),),),),),),),),),),),),),),), }",
    "{'descr': '\\'|u1', 'fortran_order': False, 'shape': (1,), }",
    "{'__class__': 1, 'descr': '|u1', 'fortran_order': False, 'shape': (1,), }",
    "__import__('os').system('true')",
    "{}",
    "",
  ),
  fc.string({ maxLength: 80 }).map((s) => `{'descr': '${s}', 'fortran_order': False, 'shape': (1,), }`),
  fc.string({ unit: "binary", maxLength: 80 }),
  fc.constantFrom("[", "(", "{").map((open) => open.repeat(5000)),
);

interface NpyPlan {
  descr: string;
  shape: number[];
  fortran: boolean;
  version: 1 | 2;
  dict: string | null;
  data: "exact" | "short" | "long" | "none";
  seed: number;
  floats: "unit" | "wild";
}

function npyFromPlan(plan: NpyPlan): Buffer {
  const count = product(plan.shape);
  let data: Uint8Array;
  const encodable = /^[<>|]([ui][1248]|f[48])$/.test(plan.descr);
  if (plan.data === "none") data = new Uint8Array(0);
  else if (encodable && Number.isSafeInteger(count) && count >= 0 && count <= 4096) {
    const kind = plan.descr[1];
    const raw = pattern(Math.max(count, 1), plan.seed);
    const values = Array.from(raw.subarray(0, count), (v) =>
      kind === "f" ? (plan.floats === "unit" ? v / 255 : [Number.NaN, -0.5, 2, v][v % 4]) : v % 3,
    );
    data = encode(plan.descr.replace(/^\|(?=[if][248])/, "<"), values as number[]);
  } else data = pattern(plan.seed % 64, plan.seed);
  if (plan.data === "short") data = data.subarray(0, Math.max(0, data.length - 1 - (plan.seed % 7)));
  if (plan.data === "long") data = Buffer.concat([data, pattern(1 + (plan.seed % 9), plan.seed)]);
  return npyBytes(plan.descr, plan.shape, data, {
    fortranOrder: plan.fortran,
    version: plan.version,
    ...(plan.dict === null ? {} : { dict: plan.dict }),
  });
}

function npyArb(role: "images" | "labels", n: number): fc.Arbitrary<Buffer> {
  const good = role === "images" ? IMAGE_DESCRS : LABEL_DESCRS;
  return fc
    .record<NpyPlan>({
      descr: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(...good) }, fc.constantFrom(...ODD_DESCRS)),
      shape: role === "images" ? imageShapeArb(n) : labelShapeArb(n),
      fortran: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, fc.constant(true)),
      version: fc.constantFrom(1 as const, 2 as const),
      dict: fc.oneof({ weight: 16, arbitrary: fc.constant(null) }, oddDictArb),
      data: fc.oneof(
        { weight: 16, arbitrary: fc.constant("exact" as const) },
        fc.constantFrom("short" as const, "long" as const, "none" as const),
      ),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
      floats: fc.oneof({ weight: 8, arbitrary: fc.constant("unit" as const) }, fc.constant("wild" as const)),
    })
    .map(npyFromPlan);
}

/** The two NPY files of a pair (same count, mostly), each possibly mutated. */
export const npyPairArb = countArb.chain((n) =>
  fc.record({
    images: fc.tuple(npyArb("images", n), mutationsArb).map(([b, m]) => applyMutations(b, m)),
    labels: fc
      .tuple(fc.oneof({ weight: 12, arbitrary: fc.constant(n) }, smallDim), mutationsArb)
      .chain(([k, m]) => npyArb("labels", k).map((b) => applyMutations(b, m))),
  }),
);

// ---------------------------------------------------------------------------------------------
// Archives (tar, tar.gz, zip) from a list of members

export type ArchiveKind = "tar" | "tar.gz" | "zip";
export const archiveKindArb = fc.constantFrom<ArchiveKind>("tar", "tar.gz", "zip");

export interface Member {
  name: string;
  data?: Uint8Array;
  type?: TarType;
  linkname?: string;
  /** zip only: deflate (default) or stored */
  stored?: boolean;
  /** zip only: lies in the headers */
  declaredSize?: number;
  crc?: number;
  methodCode?: number;
}

const ZIP_MODES: Record<TarType, number | undefined> = {
  file: undefined,
  directory: undefined,
  symlink: 0o120777,
  hardlink: 0o120777,
  "char-device": 0o020644,
  "block-device": 0o060644,
  fifo: 0o010644,
};

export function archiveBytes(kind: ArchiveKind, members: readonly Member[], endBlocks = 2): Buffer {
  if (kind === "zip") {
    const zipped: ZipMember[] = members.map((m) => ({
      name: m.type === "directory" && !m.name.endsWith("/") ? `${m.name}/` : m.name,
      data: m.type === "directory" ? new Uint8Array(0) : (m.data ?? new Uint8Array(0)),
      method: m.stored ? "stored" : "deflate",
      declaredSize: m.declaredSize,
      crc: m.crc,
      methodCode: m.methodCode,
      unixMode: ZIP_MODES[m.type ?? "file"],
    }));
    return zipBytes(zipped);
  }
  const tar = tarBytes(
    members.map((m) => ({ name: m.name, data: m.data, type: m.type ?? "file", linkname: m.linkname })),
    endBlocks,
  );
  return kind === "tar.gz" ? gzipSync(tar) : tar;
}

const HOSTILE_NAMES = [
  "../x",
  "../../etc/passwd",
  "/etc/passwd",
  "a/../../b.png",
  "cls/../../b.png",
  "C:/x.png",
  "c:x.png",
  "cls\\a.png",
  "cls/a\0.png",
  "./cls/./a.png",
  "cls//a.png",
  "",
  ".",
  "..",
  "/",
  "cls/..",
  "é/ü.png",
  "\u202ecls/gnp.a",
  "\uFFFD/\uD800.png",
  `${"d".repeat(150)}/a.png`,
  `cls/${"x".repeat(250)}.png`,
  "__MACOSX/cls/a.png",
  ".hidden/a.png",
  "cls/.a.png",
];

const TYPES: TarType[] = ["file", "directory", "symlink", "hardlink", "char-device", "block-device", "fifo"];

/** Member lies on top of a member: zip header fields that disagree with the data. */
const memberLiesArb = fc.record(
  {
    stored: fc.boolean(),
    declaredSize: fc.constantFrom(0, 1, 3073, 2 ** 31, 2 ** 32 - 1),
    crc: fc.nat(),
    methodCode: fc.constantFrom(1, 6, 9, 12, 14, 93, 99, 0xffff),
  },
  { requiredKeys: [] },
);

/** A member no honest uploader makes: unsafe names, links, devices, nested archives. */
export function hostileMemberArb(nearby: readonly string[]): fc.Arbitrary<Member> {
  const names = nearby.length > 0 ? [...HOSTILE_NAMES, ...nearby] : HOSTILE_NAMES;
  const nested = fc.constant(archiveBytes("zip", [{ name: "inner/a.png", data: pngBytes(1, 1, 1, [7]) }]));
  return fc
    .record({
      name: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...names) },
        { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
      ),
      type: fc.oneof({ weight: 3, arbitrary: fc.constant<TarType>("file") }, fc.constantFrom(...TYPES)),
      linkname: fc.constantFrom("/etc/passwd", "../../x", "cls/a.png", ""),
      data: fc.oneof(fc.uint8Array({ maxLength: 64 }), nested),
    })
    .chain((m) => memberLiesArb.map((lies) => ({ ...m, ...lies })))
    .map((m) => m as Member);
}

/** Inserts up to two hostile members among `members` and mangles a few zip headers. */
export function hostileArchiveArb(kind: ArchiveKind, members: readonly Member[]): fc.Arbitrary<Buffer> {
  const names = members.map((m) => m.name);
  return fc
    .record({
      extra: fc.oneof(
        { weight: 5, arbitrary: fc.constant<[number, Member][]>([]) },
        fc.array(fc.tuple(fc.nat(), hostileMemberArb(names)), { minLength: 1, maxLength: 2 }),
      ),
      lies: fc.oneof(
        { weight: 10, arbitrary: fc.constant<[number, Partial<Member>][]>([]) },
        fc.array(fc.tuple(fc.nat(), memberLiesArb), { minLength: 1, maxLength: 2 }),
      ),
      endBlocks: fc.oneof({ weight: 12, arbitrary: fc.constant(2) }, fc.integer({ min: 0, max: 3 })),
      mutations: mutationsArb,
    })
    .map(({ extra, lies, endBlocks, mutations }) => {
      const list = [...members];
      for (const [at, member] of extra) list.splice(at % (list.length + 1), 0, member);
      for (const [at, lie] of lies) {
        const i = at % Math.max(1, list.length);
        if (list[i]) list[i] = { ...list[i], ...lie } as Member;
      }
      return applyMutations(archiveBytes(kind, list, endBlocks), mutations);
    });
}

// ---------------------------------------------------------------------------------------------
// NPZ

export const npzArb = countArb.chain((n) =>
  fc
    .record({
      pair: fc.constantFrom(["images", "labels"], ["x", "y"], ["x_train", "y_train"], ["images", "y"]),
      images: npyArb("images", n),
      labels: npyArb("labels", n),
      stored: fc.boolean(),
      drop: fc.oneof({ weight: 8, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 1 })),
      twice: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, fc.constant(true)),
    })
    .chain(({ pair, images, labels, stored, drop, twice }) => {
      const members: Member[] = [
        { name: `${pair[0]}.npy`, data: images, stored },
        { name: `${pair[1]}.npy`, data: labels, stored },
        { name: "x_test.npy", data: labels, stored },
      ];
      if (drop >= 0) members.splice(drop, 1);
      if (twice) members.push({ ...(members[0] as Member) });
      return hostileArchiveArb("zip", members);
    }),
);

// ---------------------------------------------------------------------------------------------
// IDX

const IDX_SIZES: Record<number, number> = { 8: 1, 9: 1, 11: 2, 12: 4, 13: 4, 14: 8 };
const IDX_CODES = Object.keys(IDX_SIZES).map(Number);

function idxArb(role: "images" | "labels", n: number): fc.Arbitrary<Buffer> {
  const shape =
    role === "images"
      ? imageShapeArb(n)
      : fc.oneof({ weight: 10, arbitrary: fc.constant([n]) }, fc.array(dimArb, { maxLength: 9 }));
  return fc
    .record({
      code: fc.oneof(
        { weight: 12, arbitrary: fc.constant(0x08) },
        fc.constantFrom(...IDX_CODES, 0x00, 0x0a, 0xff),
      ),
      shape,
      data: fc.oneof(
        { weight: 16, arbitrary: fc.constant(0) },
        fc.constantFrom(-1, 1, 4096),
        fc.constant(Number.NaN),
      ),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
      gzip: fc.boolean(),
      mutations: mutationsArb,
      afterGzip: fc.boolean(),
    })
    .map(({ code, shape, data, seed, gzip, mutations, afterGzip }) => {
      // IDX dims are uint32; what does not fit is written as its low 32 bits.
      const dims = shape
        .slice(0, 255)
        .map((d) => (Number.isSafeInteger(d) && d >= 0 ? d % 2 ** 32 : 0xffffffff));
      const count = product(dims) * (IDX_SIZES[code] ?? 1);
      const length = Number.isNaN(data) ? 0 : Math.max(0, (count <= 4096 ? count : 8) + data);
      const raw = pattern(length, seed).map((v) => (role === "labels" ? v % 3 : v));
      let bytes: Buffer = idxBytes(code, dims, raw);
      if (!afterGzip) bytes = applyMutations(bytes, mutations);
      if (gzip) bytes = gzipSync(bytes);
      if (afterGzip) bytes = applyMutations(bytes, mutations);
      return bytes;
    });
}

export const idxPairArb = countArb.chain((n) =>
  fc.record({ images: idxArb("images", n), labels: idxArb("labels", n) }),
);

// ---------------------------------------------------------------------------------------------
// Header fields of the archive containers themselves

/** Offsets of every tar header block in an archive built by `archiveBytes` from `members`. */
function tarHeaderOffsets(members: readonly Member[]): number[] {
  const offsets: number[] = [];
  let at = 0;
  for (const m of members) {
    offsets.push(at);
    at += 512 + Math.ceil((m.data?.length ?? 0) / 512) * 512;
  }
  return offsets;
}

interface FieldLie {
  /** which header (modulo the count) */
  header: number;
  field: number;
  value: number;
  text: string;
  fixChecksum: boolean;
}

/** ustar fields: name, mode, size, mtime, chksum, typeflag, linkname, magic, version, prefix */
const TAR_FIELDS: Array<[number, number]> = [
  [0, 100],
  [100, 8],
  [124, 12],
  [136, 12],
  [148, 8],
  [156, 1],
  [157, 100],
  [257, 6],
  [263, 2],
  [345, 155],
];
const TAR_TEXTS = [
  "77777777777\0",
  "99999999999\0",
  "-1\0",
  " \0",
  "",
  "\x80\0\0\0\0\0\0\0\0\0\x10\0",
  "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
  "\x80\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff",
  "../../x",
  "L",
  "K",
  "x",
  "g",
  "7",
  "ustar ",
];

const fieldLieArb = fc.record({
  header: fc.nat(),
  field: fc.nat(),
  value: fc.oneof(fc.constantFrom(...U32S), fc.nat()),
  text: fc.oneof(fc.constantFrom(...TAR_TEXTS), fc.string({ unit: "binary-ascii", maxLength: 12 })),
  fixChecksum: fc.boolean(),
});

function lieInTar(tar: Buffer, members: readonly Member[], lie: FieldLie): void {
  const offsets = tarHeaderOffsets(members);
  if (offsets.length === 0) return;
  const base = offsets[lie.header % offsets.length] as number;
  const [offset, width] = TAR_FIELDS[lie.field % TAR_FIELDS.length] as [number, number];
  const field = Buffer.alloc(width);
  field.write(lie.text, "latin1");
  field.copy(tar, base + offset);
  if (lie.fixChecksum && offset !== 148) {
    tar.fill(0x20, base + 148, base + 156);
    let sum = 0;
    for (let i = base; i < base + 512; i++) sum += tar[i] as number;
    tar.write(`${sum.toString(8).padStart(6, "0")}\0 `, base + 148, "latin1");
  }
}

/** Central directory (offset in header, width) and end-of-central-directory fields. */
const ZIP_CENTRAL_FIELDS: Array<[number, 2 | 4]> = [
  [4, 2], // version made by
  [8, 2], // flags (encryption, data descriptor)
  [10, 2], // method
  [20, 4], // compressed size
  [24, 4], // uncompressed size
  [28, 2], // name length
  [30, 2], // extra length
  [32, 2], // comment length
  [38, 4], // external attributes
  [42, 4], // local header offset
];
const ZIP_END_FIELDS: Array<[number, 2 | 4]> = [
  [4, 2],
  [8, 2],
  [10, 2],
  [12, 4],
  [16, 4],
  [20, 2],
];
const ZIP_LOCAL_FIELDS: Array<[number, 2 | 4]> = [
  [6, 2],
  [8, 2],
  [18, 4],
  [22, 4],
  [26, 2],
  [28, 2],
];

function writeField(b: Buffer, at: number, width: 2 | 4, value: number): void {
  if (at + width > b.length) return;
  if (width === 2) b.writeUInt16LE(value & 0xffff, at);
  else b.writeUInt32LE(value >>> 0, at);
}

function lieInZip(zip: Buffer, lie: FieldLie): void {
  const end = zip.length - 22;
  const where = lie.field % 3;
  if (where === 0) {
    const [offset, width] = ZIP_END_FIELDS[lie.header % ZIP_END_FIELDS.length] as [number, 2 | 4];
    writeField(zip, end + offset, width, lie.value);
    return;
  }
  // An earlier lie may have moved the directory: follow the offsets only while they hold.
  const inside = (at: number, width: number) => at >= 0 && at + width <= zip.length;
  const count = zip.readUInt16LE(end + 10);
  if (count === 0) return;
  let central = zip.readUInt32LE(end + 16);
  const target = lie.header % count;
  for (let i = 0; i < target && inside(central, 46); i++) central += 46 + zip.readUInt16LE(central + 28);
  if (!inside(central, 46)) return;
  const value = lie.value % 3 === 0 ? 0xffffffff : lie.value;
  if (where === 1) {
    const [offset, width] = ZIP_CENTRAL_FIELDS[lie.value % ZIP_CENTRAL_FIELDS.length] as [number, 2 | 4];
    writeField(zip, central + offset, width, value);
  } else {
    const local = zip.readUInt32LE(central + 42);
    const [offset, width] = ZIP_LOCAL_FIELDS[lie.value % ZIP_LOCAL_FIELDS.length] as [number, 2 | 4];
    if (inside(local, 30)) writeField(zip, local + offset, width, value);
  }
}

/** The members of an archive-walker case: a few plain files and folders, then the hostile rest. */
const plainMembersArb = fc.array(
  fc.record({
    name: fc.constantFrom("a.png", "cls/a.png", "cls/b.ppm", "dir/", "x/y/z.bin", "README"),
    data: fc.uint8Array({ maxLength: 700 }),
    type: fc.oneof({ weight: 5, arbitrary: fc.constant<TarType>("file") }, fc.constant<TarType>("directory")),
  }),
  { maxLength: 4 },
);

export interface WalkCase {
  kind: ArchiveKind;
  bytes: Buffer;
  /** per member: 0 skip, 1 read whole, 2 read in chunks */
  reads: number[];
}

export function walkCaseArb(kind: ArchiveKind): fc.Arbitrary<WalkCase> {
  return fc
    .record({
      members: plainMembersArb,
      extra: fc.array(fc.tuple(fc.nat(), hostileMemberArb([])), { maxLength: 2 }),
      lies: fc.oneof(
        { weight: 1, arbitrary: fc.constant<FieldLie[]>([]) },
        { weight: 2, arbitrary: fc.array(fieldLieArb, { minLength: 1, maxLength: 2 }) },
      ),
      endBlocks: fc.oneof({ weight: 4, arbitrary: fc.constant(2) }, fc.integer({ min: 0, max: 3 })),
      mutations: mutationsArb,
      reads: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 8, maxLength: 8 }),
    })
    .map(({ members, extra, lies, endBlocks, mutations, reads }) => {
      const list: Member[] = [...members];
      for (const [at, member] of extra) list.splice(at % (list.length + 1), 0, member);
      // The header lies go into the uncompressed container, before gzip.
      const plain: Member[] = list.map((m) => (m.type === "directory" ? { ...m, data: undefined } : m));
      let bytes = archiveBytes(kind === "zip" ? "zip" : "tar", plain, endBlocks);
      for (const lie of lies) {
        if (kind === "zip") lieInZip(bytes, lie);
        else lieInTar(bytes, plain, lie);
      }
      if (kind === "tar.gz") bytes = gzipSync(bytes);
      return { kind, bytes: applyMutations(bytes, mutations), reads };
    });
}

// ---------------------------------------------------------------------------------------------
// CIFAR10_BINARY

const CIFAR_RECORD = 3073;
const CIFAR_NAMES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];
const CIFAR_BATCHES = [
  "data_batch_1.bin",
  "data_batch_2.bin",
  "data_batch_3.bin",
  "data_batch_4.bin",
  "data_batch_5.bin",
  "test_batch.bin",
];

const cifarBatchArb = fc.record({
  present: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, fc.constant(false)),
  /** enough for 10 classes in either split */
  records: fc.integer({ min: 2, max: 3 }),
  /** bytes added or cut: 0 keeps whole records */
  extra: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.integer({ min: -3073, max: 3072 })),
  label: fc.oneof(
    { weight: 16, arbitrary: fc.integer({ min: 0, max: 9 }) },
    fc.integer({ min: 10, max: 255 }),
  ),
  twice: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, fc.constant(true)),
  seed: fc.integer({ min: 1, max: 1 << 20 }),
});

const cifarMetaArb = fc.oneof(
  { weight: 12, arbitrary: fc.constant(`${CIFAR_NAMES.join("\n")}\n\n`) },
  fc.constantFrom(
    null,
    "",
    "only-one\n",
    "a\nb\n",
    "a\r\nb\r\nc\r\n",
    "a\0b\nc\n",
    `${CIFAR_NAMES.join("\n")}\n${CIFAR_NAMES.join("\n")}\n`,
    "__proto__\nconstructor\n",
  ),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString("latin1")),
  fc.constant("x\n".repeat(200_001)),
);

export interface RecordCase {
  archive: Buffer;
  options: unknown;
  classNames?: unknown;
  numClasses?: number;
}

/** Class names and counts as a user may give them alongside an archive. */
const classOptionsArb = fc.oneof(
  { weight: 24, arbitrary: fc.constant({}) },
  fc.record({ classNames: fc.array(fc.string({ maxLength: 8 }), { maxLength: 12 }) }),
  fc.record({ numClasses: fc.constantFrom(0, 1, 2, 10, 43, 44, 100_001, -1, 2.5) }),
  fc.record({ classNames: fc.constant(["a", 1, null] as unknown) }),
);

export const cifarArb: fc.Arbitrary<RecordCase> = fc
  .record({
    kind: archiveKindArb,
    split: fc.oneof(
      { weight: 16, arbitrary: fc.constantFrom("TRAIN", "TEST") },
      fc.constantFrom(undefined, "VAL", 1, { toString: "TRAIN" }),
    ),
    root: fc.oneof(
      { weight: 6, arbitrary: fc.constant("cifar-10-batches-bin/") },
      fc.constantFrom("", "a/b/"),
    ),
    batches: fc.array(cifarBatchArb, { minLength: 6, maxLength: 6 }),
    meta: cifarMetaArb,
    order: fc.shuffledSubarray([0, 1, 2, 3, 4, 5, 6], { minLength: 7, maxLength: 7 }),
    classes: classOptionsArb,
  })
  .chain(({ kind, split, root, batches, meta, order, classes }) => {
    const members: Member[] = [];
    for (const i of order) {
      if (i === 6) {
        if (meta !== null) members.push({ name: `${root}batches.meta.txt`, data: Buffer.from(meta) });
        continue;
      }
      const batch = batches[i] as ValueOf<typeof cifarBatchArb>;
      if (!batch.present) continue;
      // The test batch holds 10 records or more, so that every class can have one.
      const n = i === 5 ? batch.records + 8 : batch.records;
      const records = pattern(n * CIFAR_RECORD, batch.seed);
      for (let r = 0; r < n; r++)
        records[r * CIFAR_RECORD] = batch.label < 10 ? (batch.label + r) % 10 : batch.label;
      const length = Math.max(0, records.length + batch.extra);
      const data =
        length <= records.length
          ? records.subarray(0, length)
          : Buffer.concat([records, pattern(length - records.length)]);
      const member = { name: `${root}${CIFAR_BATCHES[i]}`, data };
      members.push(member);
      if (batch.twice) members.push({ ...member, name: `other/${CIFAR_BATCHES[i]}` });
    }
    return hostileArchiveArb(kind, members).map((archive) => ({
      archive,
      options: { split },
      ...classes,
    }));
  });

// ---------------------------------------------------------------------------------------------
// Images (for GTSRB and CLASS_FOLDERS)

const ppmHeader = (magic: string, w: number | string, h: number | string, maxval: number | string) =>
  `${magic}\n${w} ${h}\n${maxval}\n`;

/** A PNG whose IHDR declares another size (with a valid CRC): a decompression bomb's header. */
function pngClaiming(width: number, height: number): Buffer {
  const png = Buffer.from(pngBytes(2, 2, 3, pattern(12)));
  png.writeUInt32BE(width >>> 0, 16);
  png.writeUInt32BE(height >>> 0, 20);
  png.writeUInt32BE(zlibCrc(png.subarray(12, 29)), 29);
  return png;
}

function zlibCrc(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export interface ImagePlan {
  encoding: "P6" | "P5" | "P3" | "png-rgb" | "png-grey" | "png-rgba" | "png-16" | "hostile";
  hostile: number;
  seed: number;
  mutations: Mutation[];
}

const HOSTILE_IMAGES: Array<(w: number, h: number) => Buffer> = [
  () => Buffer.alloc(0),
  () => Buffer.from("GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
  () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'),
  () => pngClaiming(100_000, 100_000),
  () => pngClaiming(0, 4),
  () => pngClaiming(0xffffffff, 1),
  () => Buffer.from(`${ppmHeader("P6", 99999, 99999, 255)}abc`),
  () => Buffer.from(`${ppmHeader("P6", 4096, 4097, 255)}abc`),
  (w, h) => Buffer.concat([Buffer.from(ppmHeader("P6", w, h, 0)), pattern(w * h * 3)]),
  (w, h) => Buffer.concat([Buffer.from(ppmHeader("P6", w, h, 65535)), pattern(w * h * 6)]),
  (w, h) => Buffer.concat([Buffer.from(ppmHeader("P5", w, h, 7)), pattern(w * h)]),
  (w, h) => Buffer.from(`${ppmHeader("P3", w, h, 255)}${"300 ".repeat(w * h * 3)}`),
  (w, h) => Buffer.from(`${ppmHeader("P2", w, h, 255)}${"-1 ".repeat(w * h)}`),
  () => Buffer.from(`P6\n${"#".repeat(5000)}\n1 1\n255\n\0\0\0`),
  () => Buffer.from("P6 1 1 255"),
  () => Buffer.from("P6\n1234567890 1 255\n"),
  () => Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0xff, 0xff, 0xff, 0xff, 0x03]),
  () => Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x02]),
  () => archiveBytes("zip", [{ name: "a.png", data: pngBytes(1, 1, 1, [1]) }]),
];

export const imagePlanArb: fc.Arbitrary<ImagePlan> = fc.record({
  encoding: fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom("P6" as const, "P5" as const, "P3" as const) },
    {
      weight: 6,
      arbitrary: fc.constantFrom(
        "png-rgb" as const,
        "png-grey" as const,
        "png-rgba" as const,
        "png-16" as const,
      ),
    },
    { weight: 1, arbitrary: fc.constant("hostile" as const) },
  ),
  hostile: fc.nat(),
  seed: fc.integer({ min: 1, max: 1 << 20 }),
  mutations: fc.oneof(
    { weight: 30, arbitrary: fc.constant<Mutation[]>([]) },
    fc.array(mutationArb, { minLength: 1, maxLength: 2 }),
  ),
});

export function imageBytes(plan: ImagePlan, width: number, height: number): Buffer {
  const px = width * height;
  let bytes: Buffer;
  switch (plan.encoding) {
    case "P6":
    case "P5": {
      const channels = plan.encoding === "P6" ? 3 : 1;
      bytes = Buffer.concat([
        Buffer.from(ppmHeader(plan.encoding, width, height, 255)),
        pattern(px * channels, plan.seed),
      ]);
      break;
    }
    case "P3":
      bytes = Buffer.from(
        `${ppmHeader("P3", width, height, 255)}${Array.from(pattern(px * 3, plan.seed)).join(" ")}\n`,
      );
      break;
    case "png-rgb":
      bytes = pngBytes(width, height, 3, pattern(px * 3, plan.seed));
      break;
    case "png-grey":
      bytes = pngBytes(width, height, 1, pattern(px, plan.seed));
      break;
    case "png-rgba":
      bytes = pngBytes(width, height, 4, pattern(px * 4, plan.seed));
      break;
    case "png-16":
      bytes = pngBytes(
        width,
        height,
        3,
        Array.from(pattern(px * 3, plan.seed), (v) => v * 257),
        16,
      );
      break;
    case "hostile":
      bytes = (HOSTILE_IMAGES[plan.hostile % HOSTILE_IMAGES.length] as (w: number, h: number) => Buffer)(
        width,
        height,
      );
      break;
  }
  return applyMutations(bytes, plan.mutations);
}

const resizeOptionArb = fc.oneof(
  { weight: 12, arbitrary: fc.constant(undefined) },
  {
    weight: 12,
    arbitrary: fc.record({ width: fc.integer({ min: 1, max: 8 }), height: fc.integer({ min: 1, max: 8 }) }),
  },
  fc.constantFrom(
    { width: 0, height: 4 },
    { width: 4097, height: 1 },
    { width: 2.5, height: 2 },
    { width: "4", height: 4 },
    [],
  ),
);

const channelsOptionArb = fc.oneof(
  { weight: 24, arbitrary: fc.constantFrom(undefined, 1, 3) },
  fc.constantFrom(0, 2, 4, "3", null),
);

// ---------------------------------------------------------------------------------------------
// GTSRB

const GTSRB_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId";
const pad5 = (n: number) => String(n).padStart(5, "0");

const gtsrbImageArb = fc.record({
  plan: imagePlanArb,
  width: fc.integer({ min: 1, max: 6 }),
  height: fc.integer({ min: 1, max: 6 }),
  /** the CSV row's lies: 0 none, else which */
  rowLie: fc.oneof({ weight: 60, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 9 })),
  missingRow: fc.oneof({ weight: 80, arbitrary: fc.constant(false) }, fc.constant(true)),
  missingFile: fc.oneof({ weight: 80, arbitrary: fc.constant(false) }, fc.constant(true)),
});

function gtsrbRow(file: string, image: ValueOf<typeof gtsrbImageArb>, classId: number): string {
  const { width: w, height: h } = image;
  const cells = [file, w, h, 0, 0, w - 1, h - 1, classId].map(String);
  switch (image.rowLie) {
    case 1:
      cells[5] = String(w); // ROI past the edge
      break;
    case 2:
      cells[7] = "43";
      break;
    case 3:
      cells[7] = "-1";
      break;
    case 4:
      cells[1] = "0";
      break;
    case 5:
      cells.pop(); // a field short
      break;
    case 6:
      cells[2] = "9999999999";
      break;
    case 7:
      cells[0] = "";
      break;
    case 8:
      cells[7] = String(classId + 1);
      break;
    case 9:
      cells[3] = "1e3";
      break;
  }
  return cells.join(";");
}

const csvHeaderArb = fc.oneof(
  { weight: 30, arbitrary: fc.constant(GTSRB_HEADER) },
  fc.constantFrom(
    `\uFEFF${GTSRB_HEADER}`,
    "Filename;Width;Height;ClassId",
    "ClassId;Roi.Y2;Roi.X2;Roi.Y1;Roi.X1;Height;Width;Filename",
    `${GTSRB_HEADER};Extra`,
    "",
    "\0\0\0",
  ),
);

const ALL_GTSRB_CLASSES = Array.from({ length: 43 }, (_, i) => i);

/**
 * GTSRB's 43 classes must each have an image for a dataset to be made, so most cases hold all
 * of them (one tiny image each); the rest lie about class folders and ClassIds.
 */
export const gtsrbArb: fc.Arbitrary<RecordCase> = fc
  .record({
    kind: archiveKindArb,
    layout: fc.oneof({ weight: 8, arbitrary: fc.constantFrom("TRAIN", "TEST") }, fc.constant("BOTH")),
    classes: fc.oneof(
      { weight: 3, arbitrary: fc.constant(ALL_GTSRB_CLASSES) },
      fc.uniqueArray(
        fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 3 }) }, fc.constantFrom(42, 43, 99999)),
        { minLength: 1, maxLength: 2 },
      ),
    ),
    images: fc.array(gtsrbImageArb, { minLength: 1, maxLength: 3 }),
    header: csvHeaderArb,
    root: fc.constantFrom("GTSRB/", "", "a/b/"),
    options: fc.record(
      {
        split: fc.oneof(
          { weight: 8, arbitrary: fc.constant(undefined) },
          fc.constantFrom("TRAIN", "TEST", "BOTH"),
        ),
        cropToRoi: fc.oneof(
          { weight: 20, arbitrary: fc.constantFrom(undefined, true, false) },
          fc.constant("yes"),
        ),
        resize: resizeOptionArb,
        channels: channelsOptionArb,
      },
      { requiredKeys: [] },
    ),
    duplicateCsv: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, fc.constant(true)),
  })
  .chain(({ kind, layout, classes, images, header, root, options, duplicateCsv }) => {
    const members: Member[] = [];
    const full = classes.length === ALL_GTSRB_CLASSES.length;
    if (layout !== "TEST") {
      for (const classId of classes) {
        const folder = `${root}Final_Training/Images/${pad5(classId)}/`;
        const rows: string[] = [header];
        const own = full ? [images[classId % images.length] as ValueOf<typeof gtsrbImageArb>] : images;
        own.forEach((image, i) => {
          const file = `${pad5(classId)}_${pad5(i)}.ppm`;
          if (!image.missingFile)
            members.push({
              name: `${folder}${file}`,
              data: imageBytes(image.plan, image.width, image.height),
            });
          if (!image.missingRow) rows.push(gtsrbRow(file, image, classId));
        });
        const csv = {
          name: `${folder}GT-${pad5(classId)}.csv`,
          data: Buffer.from(`${rows.join("\r\n")}\r\n`),
        };
        members.push(csv);
        if (duplicateCsv && classId === classes[0]) members.push(csv);
      }
    }
    if (layout !== "TRAIN") {
      const rows: string[] = [header];
      const count = full ? classes.length : images.length;
      for (let i = 0; i < count; i++) {
        const image = images[i % images.length] as ValueOf<typeof gtsrbImageArb>;
        const file = `${pad5(i)}.ppm`;
        if (!image.missingFile)
          members.push({
            name: `${root}Final_Test/Images/${file}`,
            data: imageBytes(image.plan, image.width, image.height),
          });
        if (!image.missingRow) rows.push(gtsrbRow(file, image, classes[i % classes.length] as number));
      }
      members.push({ name: "GT-final_test.csv", data: Buffer.from(`${rows.join("\n")}\n`) });
    }
    return hostileArchiveArb(kind, members).map((archive) => ({ archive, options }));
  });

// ---------------------------------------------------------------------------------------------
// CLASS_FOLDERS

export const classFoldersArb: fc.Arbitrary<RecordCase> = fc
  .record({
    kind: archiveKindArb,
    root: fc.constantFrom("", "", "train/", "a/b/"),
    classes: fc.oneof(
      {
        weight: 8,
        arbitrary: fc.uniqueArray(fc.constantFrom("cat", "dog", "emu", "éclair", "10", "__proto__", "con"), {
          minLength: 2,
          maxLength: 3,
        }),
      },
      fc.constant(["cat"]),
    ) as fc.Arbitrary<string[]>,
    perClass: fc.array(
      fc.record({
        plan: imagePlanArb,
        ext: fc.oneof(
          { weight: 30, arbitrary: fc.constantFrom(".png", ".ppm", ".PNG", ".jpg") },
          fc.constantFrom(".gif", ".txt", ""),
        ),
        depth: fc.oneof({ weight: 60, arbitrary: fc.constant(0) }, fc.constantFrom(-1, 1)),
      }),
      { minLength: 1, maxLength: 2 },
    ),
    width: fc.integer({ min: 1, max: 5 }),
    height: fc.integer({ min: 1, max: 5 }),
    oddSize: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, fc.constant(true)),
    folders: fc.boolean(),
    emptyClass: fc.oneof({ weight: 20, arbitrary: fc.constant(false) }, fc.constant(true)),
    resize: resizeOptionArb,
    channels: channelsOptionArb,
    classes2: classOptionsArb,
  })
  .chain(
    ({
      kind,
      root,
      classes,
      perClass,
      width,
      height,
      oddSize,
      folders,
      emptyClass,
      resize,
      channels,
      classes2,
    }) => {
      const members: Member[] = [];
      classes.forEach((name, c) => {
        if (folders) members.push({ name: `${root}${name}/`, type: "directory" });
        perClass.forEach((image, i) => {
          const dir = image.depth === 0 ? `${root}${name}/` : image.depth < 0 ? "" : `${root}${name}/deeper/`;
          const w = oddSize && c === 1 ? width + 1 : width;
          members.push({ name: `${dir}img${c}_${i}${image.ext}`, data: imageBytes(image.plan, w, height) });
        });
      });
      if (emptyClass) members.push({ name: `${root}empty/`, type: "directory" });
      members.push({ name: `${root}.DS_Store`, data: Buffer.from("clutter") });
      return hostileArchiveArb(kind, members).map((archive) => ({
        archive,
        options: { resize, channels },
        ...classes2,
      }));
    },
  );
