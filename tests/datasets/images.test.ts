import assert from "node:assert/strict";
import { describe, it } from "node:test";
import sharp from "sharp";
import {
  decodeImage,
  MAX_SOURCE_PIXELS,
  toChannels,
  transformImage,
} from "../../src/datasets/images/decode.ts";
import { decodePpm } from "../../src/datasets/images/ppm.ts";
import { pngBytes, ppmBytes } from "./archives.ts";
import { pattern, rejectsWith } from "./helpers.ts";

const decodes = async (bytes: Buffer) => {
  const image = await decodeImage(bytes, "test image");
  return { shape: [image.height, image.width, image.channels], data: [...image.data] };
};

describe("PPM decoder", () => {
  it("P6 and P3 (RGB), P5 and P2 (grey), comments and any whitespace in the header", () => {
    const rgb = [...pattern(3 * 2 * 3, 4)];
    assert.deepEqual([...decodePpm(ppmBytes("P6", 3, 2, rgb), "x", 100).data], rgb);
    assert.deepEqual([...decodePpm(ppmBytes("P3", 3, 2, rgb, 255, "a comment"), "x", 100).data], rgb);
    assert.deepEqual([...decodePpm(ppmBytes("P5", 2, 2, [0, 9, 99, 255]), "x", 100).data], [0, 9, 99, 255]);
    const odd = Buffer.from("P2 # size next\n\t2\r\n# more\n1 3\n0 3\n", "latin1");
    const grey = decodePpm(odd, "x", 100);
    assert.deepEqual([grey.width, grey.height, grey.channels, ...grey.data], [2, 1, 1, 0, 255]);
  });

  it("maxval below 255 is scaled to 0..255 by round(v * 255 / maxval)", () => {
    const image = decodePpm(ppmBytes("P6", 2, 1, [0, 1, 2, 3, 4, 7], 7), "x", 100);
    assert.deepEqual([...image.data], [0, 36, 73, 109, 146, 255]);
  });

  it("refuses 16-bit samples, samples above maxval, truncated rasters, oversize images", () => {
    const undecodable = (bytes: Buffer) =>
      assert.throws(() => decodePpm(bytes, "x", 1000), { name: "IngestError", code: "UNDECODABLE_IMAGE" });
    undecodable(ppmBytes("P6", 1, 1, [1, 2, 3], 65535));
    undecodable(ppmBytes("P3", 1, 1, [1, 2, 9], 7));
    undecodable(ppmBytes("P5", 2, 1, [1, 9], 7));
    undecodable(ppmBytes("P6", 2, 2, pattern(12, 1)).subarray(0, 20));
    undecodable(Buffer.from("P3\n2 1\n255\n1 2 3 4 5\n"));
    undecodable(Buffer.from("P6\n-2 1\n255\n"));
    undecodable(Buffer.from("P7\n1 1\n255\n"));
    assert.throws(() => decodePpm(Buffer.from("P6\n100 100\n255\n"), "x", 1000), { code: "TOO_LARGE" });
  });
});

describe("image decoding", () => {
  it("PNG: grey, grey+alpha, RGB, RGBA, 16-bit and palette images", async () => {
    assert.deepEqual(await decodes(pngBytes(2, 1, 1, [3, 250])), { shape: [1, 2, 1], data: [3, 250] });
    assert.deepEqual(await decodes(pngBytes(2, 1, 2, [3, 0, 250, 9])), { shape: [1, 2, 1], data: [3, 250] });
    assert.deepEqual(await decodes(pngBytes(1, 2, 4, [1, 2, 3, 0, 4, 5, 6, 7])), {
      shape: [2, 1, 3],
      data: [1, 2, 3, 4, 5, 6],
    });
    const wide = await decodes(pngBytes(1, 1, 3, [0, 0x8080, 0xffff], 16));
    assert.deepEqual(wide, { shape: [1, 1, 3], data: [0, 128, 255] });
    const palette = await sharp(Buffer.from([10, 20, 30, 200, 100, 0]), {
      raw: { width: 2, height: 1, channels: 3 },
    })
      .png({ palette: true, colours: 2, dither: 0 })
      .toBuffer();
    assert.deepEqual(await decodes(palette), { shape: [1, 2, 3], data: [10, 20, 30, 200, 100, 0] });
  });

  it("a grey JPEG stays one channel; only PNG, JPEG and PPM content is decoded", async () => {
    const jpeg = await sharp(Buffer.alloc(64, 90), { raw: { width: 8, height: 8, channels: 1 } })
      .toColourspace("b-w")
      .jpeg()
      .toBuffer();
    assert.deepEqual((await decodes(jpeg)).shape, [8, 8, 1]);
    const webp = await sharp(Buffer.alloc(12, 1), { raw: { width: 2, height: 2, channels: 3 } })
      .webp()
      .toBuffer();
    await rejectsWith(decodeImage(webp, "x.png"), "UNDECODABLE_IMAGE");
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>');
    await rejectsWith(decodeImage(svg, "x.png"), "UNDECODABLE_IMAGE");
  });

  it("a small file declaring a huge image is refused before it is decoded (TOO_LARGE)", async () => {
    const side = Math.ceil(Math.sqrt(MAX_SOURCE_PIXELS)) + 1;
    const header = pngBytes(1, 1, 1, [0]);
    header.writeUInt32BE(side, 16);
    header.writeUInt32BE(side, 20);
    // fix the IHDR CRC so the header itself is valid
    const { crc32 } = await import("node:zlib");
    header.writeUInt32BE(crc32(header.subarray(12, 29)) >>> 0, 29);
    await rejectsWith(decodeImage(header, "bomb.png"), "TOO_LARGE");
  });

  it("crop then resize; toChannels converts both ways", async () => {
    const image = { data: Buffer.from(pattern(4 * 3 * 3, 2)), width: 4, height: 3, channels: 3 as const };
    const cropped = await transformImage(image, { crop: { left: 1, top: 1, width: 2, height: 2 } }, "x");
    const at = (x: number, y: number) => [...image.data.subarray((y * 4 + x) * 3, (y * 4 + x) * 3 + 3)];
    assert.deepEqual([...cropped.data], [...at(1, 1), ...at(2, 1), ...at(1, 2), ...at(2, 2)]);
    const resized = await transformImage(image, { resize: { width: 7, height: 5 } }, "x");
    assert.deepEqual([resized.width, resized.height, resized.channels, resized.data.length], [7, 5, 3, 105]);
    const grey = toChannels(
      { data: Buffer.from([255, 255, 255, 0, 0, 255]), width: 2, height: 1, channels: 3 },
      1,
    );
    assert.deepEqual([...grey.data], [255, 29]);
    assert.deepEqual([...toChannels(grey, 3).data], [255, 255, 255, 29, 29, 29]);
  });
});
