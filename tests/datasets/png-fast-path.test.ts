/**
 * The PNG fast path (images/png.ts) against sharp: for every file it takes, the pixels must be
 * sharp's, byte for byte; every file it does not take must come back null (and still decode or
 * fail through sharp). PNGs are written here with chosen row filters and chunks, which no
 * encoder's defaults would cover.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { decodeImage, decodeWithSharp, MAX_SOURCE_PIXELS } from "../../src/datasets/images/decode.ts";
import { decodePlainPng } from "../../src/datasets/images/png.ts";
import { IngestError } from "../../src/datasets/ingest-error.ts";

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

function ihdr(width: number, height: number, colourType: number, depth = 8, interlace = 0): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data[8] = depth;
  data[9] = colourType;
  data[12] = interlace;
  return chunk("IHDR", data);
}

/** Applies PNG filter `f` to one row (`prior`: the row above, unfiltered, or null). */
function filterRow(row: Buffer, prior: Buffer | null, bpp: number, f: number): Buffer {
  const out = Buffer.alloc(row.length + 1);
  out[0] = f;
  for (let x = 0; x < row.length; x++) {
    const a = x >= bpp ? (row[x - bpp] as number) : 0;
    const b = prior ? (prior[x] as number) : 0;
    const c = prior && x >= bpp ? (prior[x - bpp] as number) : 0;
    let predicted = 0;
    if (f === 1) predicted = a;
    else if (f === 2) predicted = b;
    else if (f === 3) predicted = (a + b) >> 1;
    else if (f === 4) {
      const pa = Math.abs(b - c);
      const pb = Math.abs(a - c);
      const pc = Math.abs(a + b - 2 * c);
      predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    out[x + 1] = ((row[x] as number) - predicted) & 255;
  }
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  colourType: number;
  pixels: Buffer;
  filters: (y: number) => number;
  extra?: Buffer[];
  idatParts?: number;
}

function encodePng(spec: PngSpec): Buffer {
  const bpp = { 0: 1, 2: 3, 4: 2, 6: 4 }[spec.colourType] as number;
  const stride = spec.width * bpp;
  const rows: Buffer[] = [];
  for (let y = 0; y < spec.height; y++) {
    const row = spec.pixels.subarray(y * stride, (y + 1) * stride);
    const prior = y > 0 ? spec.pixels.subarray((y - 1) * stride, y * stride) : null;
    rows.push(filterRow(row, prior, bpp, spec.filters(y)));
  }
  const z = deflateSync(Buffer.concat(rows));
  const parts = spec.idatParts ?? 1;
  const idats: Buffer[] = [];
  const size = Math.ceil(z.length / parts);
  for (let i = 0; i < z.length; i += size) idats.push(chunk("IDAT", z.subarray(i, i + size)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    ihdr(spec.width, spec.height, spec.colourType),
    ...(spec.extra ?? []),
    ...idats,
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomPng(seed: number, colourType: number): Buffer {
  const rnd = random(seed);
  const width = 1 + Math.floor(rnd() * 40);
  const height = 1 + Math.floor(rnd() * 40);
  const bpp = { 0: 1, 2: 3, 4: 2, 6: 4 }[colourType] as number;
  const pixels = Buffer.alloc(width * height * bpp);
  // smooth areas and noise, so every filter's arithmetic (including wrap-around) is exercised
  for (let i = 0; i < pixels.length; i++) pixels[i] = rnd() < 0.5 ? (i * 37) & 255 : Math.floor(rnd() * 256);
  const mixed = seed % 6 === 5;
  return encodePng({
    width,
    height,
    colourType,
    pixels,
    filters: (y) => (mixed ? Math.floor(rnd() * 5) : seed % 5 === y % 5 ? 0 : seed % 5),
    extra:
      seed % 3 === 0
        ? [chunk("gAMA", Buffer.from([0, 0, 0xb1, 0x8f])), chunk("tEXt", Buffer.from("a\0b"))]
        : [],
    idatParts: 1 + (seed % 3),
  });
}

describe("PNG fast path", () => {
  test("gives sharp's pixels for 8-bit grey, grey+alpha, RGB and RGBA with every filter", async () => {
    let taken = 0;
    for (const colourType of [0, 2, 4, 6]) {
      for (let seed = 1; seed <= 30; seed++) {
        const png = randomPng(seed * 10 + colourType, colourType);
        const fast = decodePlainPng(png, MAX_SOURCE_PIXELS);
        assert.ok(fast, `colour type ${colourType}, seed ${seed}: the fast path refused a plain PNG`);
        const reference = await decodeWithSharp(png, "png", "x.png");
        assert.deepEqual(
          { width: fast.width, height: fast.height, channels: fast.channels },
          { width: reference.width, height: reference.height, channels: reference.channels },
        );
        assert.ok(fast.data.equals(reference.data), `colour type ${colourType}, seed ${seed}: pixels differ`);
        taken++;
      }
    }
    assert.equal(taken, 120);
  });

  test("gives sharp's pixels for what sharp itself encodes", async () => {
    const rnd = random(7);
    const raw = Buffer.alloc(64 * 48 * 4);
    for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(rnd() * 256);
    for (const [channels, options] of [
      [3, { adaptiveFiltering: true }],
      [4, { compressionLevel: 9 }],
      [1, {}],
    ] as const) {
      const png = await sharp(raw.subarray(0, 64 * 48 * channels), {
        raw: { width: 64, height: 48, channels },
      })
        .png(options)
        .toBuffer();
      const fast = decodePlainPng(png, MAX_SOURCE_PIXELS);
      assert.ok(fast);
      assert.ok(fast.data.equals((await decodeWithSharp(png, "png", "x.png")).data));
    }
  });

  test("hands palette, 16-bit, interlaced, tRNS, iCCP and broken files to sharp", async () => {
    const plain = randomPng(3, 2);
    const palette = await sharp(Buffer.alloc(8 * 8 * 3, 40), { raw: { width: 8, height: 8, channels: 3 } })
      .png({ palette: true })
      .toBuffer();
    const sixteen = await sharp(Buffer.alloc(8 * 8 * 3, 40), { raw: { width: 8, height: 8, channels: 3 } })
      .toColourspace("rgb16")
      .png()
      .toBuffer();
    const interlaced = await sharp(Buffer.alloc(8 * 8 * 3, 40), { raw: { width: 8, height: 8, channels: 3 } })
      .png({ progressive: true })
      .toBuffer();
    const withChunk = (type: string, data: Buffer) =>
      Buffer.concat([plain.subarray(0, 33), chunk(type, data), plain.subarray(33)]);
    const badCrc = Buffer.from(plain);
    const at = badCrc.length - 20;
    badCrc[at] = (badCrc[at] as number) ^ 0xff;
    const cases: Record<string, Buffer> = {
      palette,
      sixteen,
      interlaced,
      tRNS: withChunk("tRNS", Buffer.from([0, 1, 0, 2, 0, 3])),
      iCCP: withChunk("iCCP", Buffer.from("x\0\0")),
      "bad CRC": badCrc,
      truncated: plain.subarray(0, plain.length - 30),
      "trailing bytes": Buffer.concat([plain, Buffer.from("junk")]),
      "too many pixels": encodePng({
        width: 1,
        height: 5,
        colourType: 0,
        pixels: Buffer.alloc(5),
        filters: () => 0,
      }),
    };
    for (const [name, png] of Object.entries(cases)) {
      const maxPixels = name === "too many pixels" ? 4 : MAX_SOURCE_PIXELS;
      assert.equal(decodePlainPng(png, maxPixels), null, name);
    }
    // sharp still decodes the unusual-but-valid ones, and refuses the broken one with a typed error
    for (const name of ["palette", "sixteen", "interlaced", "tRNS"]) {
      const image = await decodeImage(cases[name] as Buffer, `${name}.png`);
      assert.ok(image.width > 0, name);
    }
    await assert.rejects(decodeImage(badCrc, "bad.png"), (e: unknown) => {
      assert.ok(e instanceof IngestError);
      assert.equal(e.code, "UNDECODABLE_IMAGE");
      return true;
    });
  });
});
