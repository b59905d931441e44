import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import sharp from "sharp";
import { ARCHIVE_KINDS, archiveOf, pngBytes, ppmBytes } from "./archives.ts";
import {
  assertCanonical,
  ingestBytes,
  ingestFails,
  int64s,
  loadInTrainer,
  pattern,
  readNpy,
} from "./helpers.ts";

type Files = Array<[string, Uint8Array]>;

/** n RGB images of w×h per class (PNG, PPM P6 and P3 in turn), with their expected canonical bytes. */
function rgbClasses(classes: string[], perClass: number, w: number, h: number, root = "") {
  const files: Files = [];
  const expected: { pixels: Uint8Array; label: number }[] = [];
  let seed = 1;
  for (const [label, name] of classes.entries()) {
    for (let i = 0; i < perClass; i++) {
      const pixels = pattern(w * h * 3, seed++);
      const kind = i % 3;
      const file =
        kind === 0
          ? [`${name}/img${i}.png`, pngBytes(w, h, 3, pixels)]
          : kind === 1
            ? [`${name}/img${i}.ppm`, ppmBytes("P6", w, h, pixels)]
            : [`${name}/img${i}.PPM`, ppmBytes("P3", w, h, pixels, 255, "plain")];
      files.push([`${root}${file[0]}`, file[1] as Uint8Array]);
      expected.push({ pixels, label });
    }
  }
  return { files, expected };
}

const concat = (parts: { pixels: Uint8Array }[]) => Buffer.concat(parts.map((p) => p.pixels));

describe("CLASS_FOLDERS ingest", () => {
  for (const kind of ARCHIVE_KINDS) {
    it(`${kind}: PNG and PPM (P6, P3) round-trip pixel for pixel, in archive order`, async () => {
      const { files, expected } = rgbClasses(["cat", "dog", "emu"], 3, 5, 4);
      const { out, manifest } = await ingestBytes("CLASS_FOLDERS", { archive: archiveOf(kind, files) });
      assertCanonical(
        out,
        [9, 4, 5, 3],
        concat(expected),
        expected.map((e) => e.label),
      );
      assert.deepEqual(manifest.classNames, ["cat", "dog", "emu"]);
      assert.deepEqual(manifest.classHistogram, [3, 3, 3]);
      assert.equal(manifest.sourceFormat, "CLASS_FOLDERS");
    });
  }

  it("labels follow class names sorted by code point, whatever the archive order; a root folder is allowed", async () => {
    const names = ["zebra", "Zebra", "éclair", "apple", "10", "9"];
    const files: Files = [];
    names.forEach((name, i) => {
      files.push([`train/${name}/`, new Uint8Array(0)]);
      files.push([`train/${name}/a.png`, pngBytes(2, 2, 1, [i, i, i, i])]);
    });
    files.push(["train/README.txt", Buffer.from("not a class")]);
    files.push(["LICENSE", Buffer.from("top-level files are ignored")]);
    files.push(["train/.DS_Store", Buffer.from("clutter")]);
    files.push(["__MACOSX/train/zebra/._a.png", Buffer.from("resource fork")]);
    const { out, manifest } = await ingestBytes("CLASS_FOLDERS", { archive: archiveOf("tar", files) });
    const sorted = ["10", "9", "Zebra", "apple", "zebra", "éclair"];
    assert.deepEqual(manifest.classNames, sorted);
    // image i (grey value i) belongs to names[i]; its label is that name's place in `sorted`
    const labels = int64s(readNpy(join(out, "labels.npy")).data);
    assert.deepEqual(
      labels,
      names.map((n) => sorted.indexOf(n)),
    );
    assert.deepEqual(manifest.channels, 1);
  });

  it("resize: every image becomes exactly width×height (stretching, not cropping)", async () => {
    const files: Files = [
      ["a/wide.png", pngBytes(40, 10, 3, pattern(40 * 10 * 3, 3))],
      ["a/tall.ppm", ppmBytes("P6", 7, 30, pattern(7 * 30 * 3, 4))],
      ["b/same.png", pngBytes(12, 8, 3, pattern(12 * 8 * 3, 5))],
    ];
    const { out, manifest } = await ingestBytes(
      "CLASS_FOLDERS",
      { archive: archiveOf("zip", files) },
      { options: { resize: { width: 12, height: 8 } } },
    );
    assert.deepEqual([manifest.count, manifest.height, manifest.width, manifest.channels], [3, 8, 12, 3]);
    const images = readNpy(join(out, "images.npy"));
    assert.deepEqual(images.shape, [3, 8, 12, 3]);
    // an image already at the target size is not resampled
    assert.ok(images.data.subarray(2 * 288).equals(Buffer.from(pattern(288, 5))));
    // a flat colour stays that colour through the bilinear kernel
    const flat = await ingestBytes(
      "CLASS_FOLDERS",
      {
        archive: archiveOf("tar.gz", [
          [
            "a/x.png",
            pngBytes(
              9,
              9,
              3,
              new Array(243).fill(0).map((_, i) => [200, 100, 50][i % 3] as number),
            ),
          ],
          ["b/y.png", pngBytes(3, 3, 3, new Array(27).fill(7))],
        ]),
      },
      { options: { resize: { width: 4, height: 5 } } },
    );
    const flatPixels = readNpy(join(flat.out, "images.npy")).data;
    assert.deepEqual([...flatPixels.subarray(0, 6)], [200, 100, 50, 200, 100, 50]);
    assert.ok(flatPixels.subarray(60).every((v) => v === 7));
  });

  it("channels: the first image decides; the option converts (BT.601 luma, grey repeated)", async () => {
    const grey = [0, 100, 255, 30];
    const rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
    const mixed = archiveOf("tar", [
      ["a/grey.png", pngBytes(2, 2, 1, grey)],
      ["b/rgb.png", pngBytes(2, 2, 3, rgb)],
    ]);
    const error = await ingestFails("CLASS_FOLDERS", { archive: mixed }, "MIXED_CHANNELS");
    assert.match(error.message, /b\/rgb\.png has 3 channel\(s\) but a\/grey\.png has 1/);

    const toGrey = await ingestBytes("CLASS_FOLDERS", { archive: mixed }, { options: { channels: 1 } });
    const luma = (r: number, g: number, b: number) => Math.floor((299 * r + 587 * g + 114 * b + 500) / 1000);
    assertCanonical(
      toGrey.out,
      [2, 2, 2, 1],
      [...grey, luma(255, 0, 0), luma(0, 255, 0), luma(0, 0, 255), luma(10, 20, 30)],
      [0, 1],
    );
    const toRgb = await ingestBytes("CLASS_FOLDERS", { archive: mixed }, { options: { channels: 3 } });
    assertCanonical(toRgb.out, [2, 2, 2, 3], [...grey.flatMap((v) => [v, v, v]), ...rgb], [0, 1]);
  });

  it("alpha is dropped keeping the stored colours; grey PGM and grey+alpha PNG are one channel", async () => {
    const rgba = [1, 2, 3, 0, 4, 5, 6, 255];
    const { out } = await ingestBytes("CLASS_FOLDERS", {
      archive: archiveOf("zip", [
        ["a/x.png", pngBytes(2, 1, 4, rgba)],
        ["b/y.ppm", ppmBytes("P6", 2, 1, [7, 8, 9, 10, 11, 12])],
      ]),
    });
    assertCanonical(out, [2, 1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [0, 1]);
    const grey = await ingestBytes("CLASS_FOLDERS", {
      archive: archiveOf("zip", [
        ["a/x.png", pngBytes(2, 1, 2, [40, 0, 50, 255])],
        ["b/y.pgm", ppmBytes("P5", 2, 1, [60, 70])],
        ["b/z.pgm", ppmBytes("P2", 2, 1, [8, 15], 15)],
      ]),
    });
    assertCanonical(grey.out, [3, 1, 2, 1], [40, 50, 60, 70, 136, 255], [0, 1, 1]);
  });

  it("JPEG images decode to the declared shape and close to their colour", async () => {
    const jpeg = (r: number, g: number, b: number) =>
      sharp({ create: { width: 16, height: 12, channels: 3, background: { r, g, b } } })
        .jpeg({ quality: 95 })
        .toBuffer();
    const { out, manifest } = await ingestBytes("CLASS_FOLDERS", {
      archive: archiveOf("tar.gz", [
        ["red/a.jpg", await jpeg(220, 30, 40)],
        ["blue/b.JPEG", await jpeg(20, 40, 210)],
      ]),
    });
    assert.deepEqual([manifest.height, manifest.width, manifest.channels], [12, 16, 3]);
    const pixels = readNpy(join(out, "images.npy")).data;
    const [r, g, b] = [pixels[0] as number, pixels[1] as number, pixels[2] as number];
    assert.ok(Math.abs(r - 220) <= 3 && Math.abs(g - 30) <= 3 && Math.abs(b - 40) <= 3, `${r},${g},${b}`);
    assert.deepEqual(manifest.classNames, ["blue", "red"]);
  });

  it("the canonical output loads in the Python trainer", async () => {
    const { files, expected } = rgbClasses(["a", "b", "c", "d"], 5, 6, 6, "data/");
    const { out } = await ingestBytes("CLASS_FOLDERS", { archive: archiveOf("tar.gz", files) });
    const labelSum = expected.reduce((s, e) => s + e.label, 0);
    assert.equal(loadInTrainer(out), `(20, 6, 6, 3) ${labelSum}`);
  });
});

describe("CLASS_FOLDERS rejections: a typed IngestError, nothing left on disk", () => {
  const two = (extra: Files = []): Files => [
    ["a/1.png", pngBytes(2, 2, 1, [1, 2, 3, 4])],
    ["b/1.png", pngBytes(2, 2, 1, [5, 6, 7, 8])],
    ...extra,
  ];

  it("MIXED_SIZES without resize, naming both files", async () => {
    const error = await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("tar", two([["b/2.png", pngBytes(3, 2, 1, [1, 2, 3, 4, 5, 6])]])) },
      "MIXED_SIZES",
    );
    assert.match(error.message, /b\/2\.png is 3x2 but a\/1\.png is 2x2/);
  });

  it("UNDECODABLE_IMAGE: corrupt PNG, truncated PPM, a GIF named .png", async () => {
    const png = pngBytes(4, 4, 3, pattern(48, 1));
    await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("zip", two([["b/bad.png", png.subarray(0, png.length - 20)]])) },
      "UNDECODABLE_IMAGE",
    );
    await ingestFails(
      "CLASS_FOLDERS",
      {
        archive: archiveOf(
          "tar",
          two([["b/bad.ppm", ppmBytes("P6", 2, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).subarray(0, 20)]]),
        ),
      },
      "UNDECODABLE_IMAGE",
    );
    const gif = Buffer.from("GIF89a\x02\x00\x02\x00\x00\x00\x00;", "latin1");
    const error = await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("tar", two([["b/fake.png", gif]])) },
      "UNDECODABLE_IMAGE",
    );
    assert.match(error.message, /b\/fake\.png.*not a PNG, JPEG or PPM/);
  });

  it("EMPTY_CLASS, BAD_NUM_CLASSES (one class), EMPTY (no images)", async () => {
    const error = await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("tar", two([["c/", new Uint8Array(0)]])) },
      "EMPTY_CLASS",
    );
    assert.match(error.message, /c\/ holds no images/);
    await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("zip", two([["c/notes.txt", Buffer.from("no images here")]])) },
      "EMPTY_CLASS",
    );
    await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("zip", [["only/1.png", pngBytes(1, 1, 1, [1])]]) },
      "BAD_NUM_CLASSES",
    );
    await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("tar.gz", [["a/notes.txt", Buffer.from("hi")]]) },
      "EMPTY",
    );
  });

  it("BAD_CLASS_NAMES: given class names replace the folder names one for one, or are refused", async () => {
    await ingestFails("CLASS_FOLDERS", { archive: archiveOf("tar", two()) }, "BAD_CLASS_NAMES", {
      classNames: ["x", "y", "z"],
      numClasses: 3,
    });
    const renamed = await ingestBytes(
      "CLASS_FOLDERS",
      { archive: archiveOf("tar", two()) },
      { classNames: ["first", "second"], numClasses: 2 },
    );
    assert.deepEqual(renamed.manifest.classNames, ["first", "second"]);
    const counted = await ingestBytes(
      "CLASS_FOLDERS",
      { archive: archiveOf("tar", two()) },
      { numClasses: 2 },
    );
    assert.deepEqual(counted.manifest.classNames, ["a", "b"]);
    await ingestFails("CLASS_FOLDERS", { archive: archiveOf("tar", two()) }, "BAD_CLASS_NAMES", {
      numClasses: 5,
    });
  });

  it("BAD_LAYOUT: images at the top, at mixed depths, nested too deep, under several roots", async () => {
    for (const files of [
      [["top.png", pngBytes(1, 1, 1, [1])], ...two()],
      [["x/a/1.png", pngBytes(1, 1, 1, [1])], ...two()],
      [
        ["r/s/a/1.png", pngBytes(1, 1, 1, [1])],
        ["r/s/b/1.png", pngBytes(1, 1, 1, [1])],
      ],
      [
        ["train/a/1.png", pngBytes(1, 1, 1, [1])],
        ["val/b/1.png", pngBytes(1, 1, 1, [1])],
      ],
    ] as Files[]) {
      await ingestFails("CLASS_FOLDERS", { archive: archiveOf("tar", files) }, "BAD_LAYOUT");
    }
  });

  it("UNSUPPORTED_IMAGE: another kind of file inside a class folder", async () => {
    const error = await ingestFails(
      "CLASS_FOLDERS",
      { archive: archiveOf("zip", two([["a/photo.webp", Buffer.from("RIFF")]])) },
      "UNSUPPORTED_IMAGE",
    );
    assert.match(error.message, /a\/photo\.webp/);
  });

  it("BAD_OPTION: options the format does not take, or out of range", async () => {
    for (const options of [
      { split: "TRAIN" },
      { cropToRoi: true },
      { resize: { width: 0, height: 4 } },
      { resize: { width: 4 } },
      { channels: 2 },
      { colour: true },
    ]) {
      const error = await ingestFails("CLASS_FOLDERS", { archive: archiveOf("tar", two()) }, "BAD_OPTION", {
        options,
      });
      assert.ok(error.field, `no field for ${JSON.stringify(options)}`);
    }
    await ingestFails("NPZ", { archive: Buffer.from("irrelevant") }, "BAD_OPTION", {
      options: { resize: { width: 2, height: 2 } },
    });
  });
});
