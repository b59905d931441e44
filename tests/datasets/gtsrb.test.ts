import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ARCHIVE_KINDS, archiveOf, ppmBytes } from "./archives.ts";
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

const HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId";
const [W, H] = [9, 8];
/** every image's ROI: x 2..6, y 1..5 (inclusive), so 5×5 */
const ROI = [2, 1, 6, 5] as const;
const pad = (n: number, width = 5) => String(n).padStart(width, "0");

interface Image {
  file: string;
  pixels: Uint8Array;
  label: number;
}

/** Training layout: `perClass` 9×8 RGB PPMs in each class folder, with its GT CSV. */
function trainLayout(classes: number[], perClass = 1, root = "GTSRB/") {
  const files: Files = [];
  const images: Image[] = [];
  for (const classId of classes) {
    const folder = `${root}Final_Training/Images/${pad(classId)}/`;
    const rows = [HEADER];
    for (let i = 0; i < perClass; i++) {
      const name = `${pad(classId)}_${pad(i)}.ppm`;
      const pixels = pattern(W * H * 3, classId * 100 + i + 1);
      files.push([`${folder}${name}`, ppmBytes("P6", W, H, pixels)]);
      rows.push(`${name};${W};${H};${ROI.join(";")};${classId}`);
      images.push({ file: name, pixels, label: classId });
    }
    files.push([`${folder}GT-${pad(classId)}.csv`, Buffer.from(`${rows.join("\r\n")}\r\n`)]);
  }
  return { files, images };
}

/** Test layout: flat Final_Test/Images plus the labelled GT-final_test.csv at the archive root. */
function testLayout(labels: number[]) {
  const files: Files = [];
  const images: Image[] = [];
  const rows = [HEADER];
  labels.forEach((label, i) => {
    const name = `${pad(i)}.ppm`;
    const pixels = pattern(W * H * 3, 5000 + i);
    files.push([`GTSRB/Final_Test/Images/${name}`, ppmBytes("P6", W, H, pixels)]);
    rows.push(`${name};${W};${H};${ROI.join(";")};${label}`);
    images.push({ file: name, pixels, label });
  });
  files.push(["GTSRB/Final_Test/Images/GT-final_test.test.csv", Buffer.from("Filename;Width;Height\n")]);
  files.push(["GT-final_test.csv", Buffer.from(`${rows.join("\n")}\n`)]);
  return { files, images };
}

const ALL = Array.from({ length: 43 }, (_, i) => i);

/** The ROI of an H×W×3 image, cut out by hand. */
function roiOf(pixels: Uint8Array): number[] {
  const out: number[] = [];
  for (let y = ROI[1]; y <= ROI[3]; y++)
    for (let x = ROI[0]; x <= ROI[2]; x++)
      for (let c = 0; c < 3; c++) out.push(pixels[(y * W + x) * 3 + c] as number);
  return out;
}

describe("GTSRB ingest", () => {
  for (const kind of ARCHIVE_KINDS) {
    it(`${kind}: training layout, 43 classes, resized to 32×32 by default, labels from the ClassId`, async () => {
      const { files, images } = trainLayout(ALL, 1);
      const { out, manifest } = await ingestBytes("GTSRB", { archive: archiveOf(kind, files) });
      assert.deepEqual([manifest.count, manifest.height, manifest.width, manifest.channels], [43, 32, 32, 3]);
      assert.equal(manifest.numClasses, 43);
      assert.deepEqual(
        int64s(readNpy(join(out, "labels.npy")).data),
        images.map((i) => i.label),
      );
      assert.equal(manifest.sourceFormat, "GTSRB");
    });
  }

  it("cropToRoi crops to the inclusive ROI before resizing (pixel-exact when the size already matches)", async () => {
    const { files, images } = trainLayout(ALL, 2);
    const { out } = await ingestBytes(
      "GTSRB",
      { archive: archiveOf("zip", files) },
      { options: { cropToRoi: true, resize: { width: 5, height: 5 } } },
    );
    assertCanonical(
      out,
      [86, 5, 5, 3],
      images.flatMap((i) => roiOf(i.pixels)),
      images.map((i) => i.label),
    );
    // without cropToRoi the whole image is kept
    const whole = await ingestBytes(
      "GTSRB",
      { archive: archiveOf("tar", files) },
      { options: { resize: { width: W, height: H } } },
    );
    assertCanonical(
      whole.out,
      [86, H, W, 3],
      images.flatMap((i) => [...i.pixels]),
      images.map((i) => i.label),
    );
  });

  it("test layout: labels from GT-final_test.csv; channels: 1 converts to grey", async () => {
    const labels = ALL.map((i) => (i * 7) % 43);
    const { files, images } = testLayout(labels);
    const { out, manifest } = await ingestBytes(
      "GTSRB",
      { archive: archiveOf("tar.gz", files) },
      { options: { channels: 1, resize: { width: 16, height: 16 } } },
    );
    assert.deepEqual([manifest.count, manifest.height, manifest.width, manifest.channels], [43, 16, 16, 1]);
    assert.deepEqual(
      int64s(readNpy(join(out, "labels.npy")).data),
      images.map((i) => i.label),
    );
    assert.equal(loadInTrainer(out), `(43, 16, 16, 1) ${labels.reduce((a, b) => a + b, 0)}`);
  });

  it("an archive with both layouts needs the split option", async () => {
    const archive = archiveOf("zip", [...trainLayout(ALL).files, ...testLayout(ALL).files]);
    const error = await ingestFails("GTSRB", { archive }, "BAD_LAYOUT");
    assert.match(error.message, /split/);
    const { manifest } = await ingestBytes("GTSRB", { archive }, { options: { split: "TEST" } });
    assert.equal(manifest.count, 43);
  });
});

describe("GTSRB rejections: a typed IngestError, nothing left on disk", () => {
  const withCsv = (files: Files, folder: number, csv: string): Files =>
    files.map(([name, data]) => [name, name.endsWith(`GT-${pad(folder)}.csv`) ? Buffer.from(csv) : data]);

  it("MISSING_FILE: a CSV row names an image that is not there; a class folder without its CSV", async () => {
    const { files } = trainLayout(ALL);
    const extraRow = `${HEADER}\n00003_00000.ppm;9;8;2;1;6;5;3\n00003_00077.ppm;9;8;2;1;6;5;3\n`;
    const error = await ingestFails(
      "GTSRB",
      { archive: archiveOf("zip", withCsv(files, 3, extraRow)) },
      "MISSING_FILE",
    );
    assert.match(error.message, /00003_00077\.ppm/);
    const noCsv = files.filter(([name]) => !name.endsWith("GT-00005.csv"));
    await ingestFails("GTSRB", { archive: archiveOf("tar", noCsv) }, "MISSING_FILE");
    const test = testLayout(ALL).files.filter(([name]) => name !== "GT-final_test.csv");
    const noLabels = await ingestFails("GTSRB", { archive: archiveOf("tar", test) }, "MISSING_FILE");
    assert.match(noLabels.message, /GT-final_test\.csv/);
  });

  it("LABEL_OUT_OF_RANGE: ClassId or class folder above 42", async () => {
    const labels = ALL.map((i) => (i === 10 ? 43 : i));
    await ingestFails("GTSRB", { archive: archiveOf("zip", testLayout(labels).files) }, "LABEL_OUT_OF_RANGE");
    await ingestFails(
      "GTSRB",
      { archive: archiveOf("tar", trainLayout([...ALL.slice(0, 42), 50]).files) },
      "LABEL_OUT_OF_RANGE",
    );
  });

  it("BAD_CSV: an image without a row, a ClassId that contradicts its folder, a malformed row or ROI", async () => {
    const { files } = trainLayout(ALL);
    const cases = [
      `${HEADER}\n`,
      `${HEADER}\n00003_00000.ppm;9;8;2;1;6;5;4\n`,
      `${HEADER}\n00003_00000.ppm;9;8;2;1;6\n`,
      `${HEADER}\n00003_00000.ppm;9;8;2;1;9;5;3\n`,
      `${HEADER}\n00003_00000.ppm;9;8;two;1;6;5;3\n`,
      "Filename,Width,Height\n00003_00000.ppm,9,8\n",
    ];
    for (const csv of cases) {
      await ingestFails("GTSRB", { archive: archiveOf("tar", withCsv(files, 3, csv)) }, "BAD_CSV");
    }
    // cropToRoi with an image whose size is not the CSV's
    const wrongSize = `${HEADER}\n00003_00000.ppm;10;8;2;1;6;5;3\n`;
    await ingestFails("GTSRB", { archive: archiveOf("tar", withCsv(files, 3, wrongSize)) }, "BAD_CSV", {
      options: { cropToRoi: true },
    });
  });

  it("UNDECODABLE_IMAGE, EMPTY, TOO_MANY_CLASSES (fewer images than GTSRB's 43 classes), BAD_OPTION", async () => {
    const { files } = trainLayout(ALL);
    const broken = files.map(([name, data]): [string, Uint8Array] => [
      name,
      name.endsWith("00007_00000.ppm") ? Buffer.from("P6\n9 8\n255\nshort") : data,
    ]);
    await ingestFails("GTSRB", { archive: archiveOf("zip", broken) }, "UNDECODABLE_IMAGE");
    await ingestFails("GTSRB", { archive: archiveOf("zip", [["readme.txt", Buffer.from("hi")]]) }, "EMPTY");
    await ingestFails(
      "GTSRB",
      { archive: archiveOf("tar", trainLayout([0, 1, 2]).files) },
      "TOO_MANY_CLASSES",
    );
    await ingestFails("GTSRB", { archive: archiveOf("tar", files) }, "BAD_OPTION", {
      options: { channels: 4 },
    });
  });
});
