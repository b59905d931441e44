/**
 * GTSRB (German Traffic Sign Recognition Benchmark) as distributed: one archive (zip, as
 * GTSRB ships, or tar/tar.gz), part `archive`, holding either layout (under any root folder):
 *
 *   TRAIN  Final_Training/Images/<5-digit class>/*.ppm  +  .../<class>/GT-<class>.csv
 *   TEST   Final_Test/Images/*.ppm                      +  GT-final_test.csv (anywhere)
 *
 * The test images' own GT-final_test.test.csv has no ClassId: add GT-final_test.csv (from
 * GTSRB_Final_Test_GT.zip) to the archive. CSVs: see gtsrb-csv.ts.
 *
 * - Labels are the ClassId, 0..42 (LABEL_OUT_OF_RANGE otherwise); numClasses is 43; a training
 *   row's ClassId must match its folder. Every CSV row must name an image in the archive
 *   (MISSING_FILE) and every image must have a row (BAD_CSV).
 * - Options: `split` (default: the layout present; required when both are), `cropToRoi`
 *   (default false: the whole image, as most GTSRB pipelines use it; true crops to the
 *   inclusive ROI first, and the image must then have the CSV's Width×Height), `resize`
 *   (default 32×32, bilinear, see images/decode.ts), `channels` (default 3).
 * - Images are stored in archive order.
 *
 * The planning pass reads the member list and the CSVs; it keeps one CSV row per image (about
 * 100 bytes each; GTSRB has 51 839 images in all) so the second pass can label and crop.
 */

import { extname } from "node:path";
import { type Archive, isClutter, openArchive } from "../archive/index.ts";
import { MAX_IMAGE_FILE_BYTES } from "../images/decode.ts";
import { decodeInOrder, type EncodedImage } from "../images/decode-pool.ts";
import type { ImageSteps } from "../images/pipeline.ts";
import { IngestError } from "../ingest-error.ts";
import type { DatasetSplit, ImageSize, IngestOptions } from "../options.ts";
import type { FormatLimits } from "../types.ts";
import { type GtsrbRow, parseGtsrbCsv } from "./gtsrb-csv.ts";
import type { ImageRecord, RecordDataset, RecordFormatReader } from "./reader.ts";

export const GTSRB_CLASSES = 43;
export const GTSRB_DEFAULT_SIZE: ImageSize = { width: 32, height: 32 };
const TEST_CSV = "GT-final_test.csv";
const MAX_CSV_BYTES = 16 << 20;
/** Rows kept in memory by the planning pass (GTSRB itself has about 52 000). */
const MAX_IMAGES = 1_000_000;

type Member =
  | { split: "TRAIN"; kind: "image"; folder: string; key: string }
  | { split: "TRAIN"; kind: "csv"; folder: string }
  | { split: "TEST"; kind: "image"; key: string }
  | { split: "TEST"; kind: "csv" };

/** Where a member sits in the GTSRB layouts, with the root folders above it; null when elsewhere. */
function memberRole(parts: readonly string[]): { role: Member; root: string } | null {
  const name = parts.at(-1) as string;
  const isPpm = extname(name).toLowerCase() === ".ppm";
  const train = parts.indexOf("Final_Training");
  if (train >= 0 && parts[train + 1] === "Images" && parts.length === train + 4) {
    const folder = parts[train + 2] as string;
    const root = parts.slice(0, train).join("/");
    if (!/^\d{5}$/.test(folder)) {
      if (!isPpm) return null;
      throw new IngestError(
        "BAD_LAYOUT",
        `${parts.join("/")}: training class folders are 5-digit class numbers (00000..00042)`,
      );
    }
    if (name === `GT-${folder}.csv`) return { role: { split: "TRAIN", kind: "csv", folder }, root };
    if (isPpm) return { role: { split: "TRAIN", kind: "image", folder, key: `${folder}/${name}` }, root };
    return null;
  }
  const test = parts.indexOf("Final_Test");
  if (test >= 0 && parts[test + 1] === "Images" && parts.length === test + 3 && isPpm) {
    return { role: { split: "TEST", kind: "image", key: name }, root: parts.slice(0, test).join("/") };
  }
  if (name === TEST_CSV) return { role: { split: "TEST", kind: "csv" }, root: "" };
  return null;
}

/** What the planning pass gathers for one split. */
class SplitListing {
  readonly images = new Map<string, string>(); // key → member path
  readonly rows = new Map<string, GtsrbRow>(); // key → CSV row
  readonly csvs = new Map<string, string>(); // training folder (or "" for the test CSV) → member path
  root: string | undefined;
}

interface Plan {
  split: DatasetSplit;
  rows: Map<string, GtsrbRow>;
  count: number;
}

async function list(
  archive: Archive,
  wanted: DatasetSplit | undefined,
): Promise<Record<DatasetSplit, SplitListing>> {
  const listings = { TRAIN: new SplitListing(), TEST: new SplitListing() };
  for await (const member of archive.members()) {
    if (member.isDirectory || isClutter(member.parts)) continue;
    const found = memberRole(member.parts);
    if (found === null || (wanted !== undefined && found.role.split !== wanted)) continue;
    const { role, root } = found;
    const listing = listings[role.split];
    if (role.kind === "image") {
      listing.root ??= root;
      if (listing.root !== root) {
        throw new IngestError(
          "BAD_LAYOUT",
          `${archive.label}: GTSRB images under two roots (${listing.root || "."} and ${root || "."}); upload one copy`,
        );
      }
      const before = listing.images.get(role.key);
      if (before !== undefined) {
        throw new IngestError("BAD_ARCHIVE", `${archive.label}: ${member.path} appears twice`);
      }
      listing.images.set(role.key, member.path);
      if (listing.images.size > MAX_IMAGES) {
        throw new IngestError("TOO_LARGE", `${archive.label}: more than ${MAX_IMAGES} GTSRB images`);
      }
      continue;
    }
    const folder = role.split === "TRAIN" ? role.folder : "";
    const before = listing.csvs.get(folder);
    if (before !== undefined) {
      throw new IngestError(
        "BAD_ARCHIVE",
        `${archive.label}: ${before} and ${member.path} are the same CSV twice`,
      );
    }
    listing.csvs.set(folder, member.path);
    const rows = parseGtsrbCsv(await member.read(MAX_CSV_BYTES), `${archive.label}: ${member.path}`);
    for (const [file, row] of rows) listing.rows.set(folder === "" ? file : `${folder}/${file}`, row);
    if (listing.rows.size > MAX_IMAGES) {
      throw new IngestError("TOO_LARGE", `${archive.label}: more than ${MAX_IMAGES} GTSRB CSV rows`);
    }
  }
  return listings;
}

function chooseSplit(
  listings: Record<DatasetSplit, SplitListing>,
  wanted: DatasetSplit | undefined,
  label: string,
) {
  if (wanted !== undefined) return wanted;
  const present = (["TRAIN", "TEST"] as const).filter((s) => listings[s].images.size > 0);
  if (present.length === 2) {
    throw new IngestError(
      "BAD_LAYOUT",
      `${label}: the archive holds both Final_Training and Final_Test images; set the split option (TRAIN or TEST)`,
    );
  }
  if (present.length === 0) {
    throw new IngestError(
      "EMPTY",
      `${label}: no GTSRB images; expected Final_Training/Images/<5-digit class>/*.ppm with GT-<class>.csv, or Final_Test/Images/*.ppm with ${TEST_CSV}`,
    );
  }
  return present[0] as DatasetSplit;
}

function checkLabel(classId: number, where: string): void {
  if (classId >= GTSRB_CLASSES) {
    throw new IngestError(
      "LABEL_OUT_OF_RANGE",
      `${where}: ClassId ${classId}; GTSRB classes are 0..${GTSRB_CLASSES - 1}`,
    );
  }
}

/** Every image has a row, every row an image, every label its range (and training folder). */
function validate(split: DatasetSplit, listing: SplitListing, label: string): void {
  if (listing.images.size === 0) {
    throw new IngestError(
      "EMPTY",
      `${label}: no ${split === "TRAIN" ? "Final_Training/Images/<class>/*.ppm" : "Final_Test/Images/*.ppm"} images`,
    );
  }
  const csvName = (key: string) => (split === "TRAIN" ? `GT-${key.split("/")[0]}.csv` : TEST_CSV);
  if (split === "TEST" && !listing.csvs.has("")) {
    throw new IngestError(
      "MISSING_FILE",
      `${label}: ${TEST_CSV} (the test labels, from GTSRB_Final_Test_GT.zip) is not in the archive`,
    );
  }
  if (split === "TRAIN") {
    const folders = new Set<string>();
    for (const key of listing.images.keys()) folders.add(key.split("/")[0] as string);
    for (const folder of folders) {
      checkLabel(Number(folder), `${label}: folder ${folder}`);
      if (!listing.csvs.has(folder)) {
        throw new IngestError("MISSING_FILE", `${label}: class folder ${folder} has no GT-${folder}.csv`);
      }
    }
    for (const [folder, path] of listing.csvs) {
      if (!folders.has(folder))
        throw new IngestError("EMPTY_CLASS", `${label}: ${path} lists a class folder with no images`);
    }
  }
  for (const [key, row] of listing.rows) {
    if (!listing.images.has(key)) {
      throw new IngestError(
        "MISSING_FILE",
        `${label}: ${csvName(key)} names ${key.split("/").at(-1)}, which is not in the archive`,
      );
    }
    checkLabel(row.classId, `${label}: ${csvName(key)} row for ${key}`);
    if (split === "TRAIN" && row.classId !== Number(key.split("/")[0])) {
      throw new IngestError(
        "BAD_CSV",
        `${label}: ${csvName(key)} gives ${key} the ClassId ${row.classId}, but it is in folder ${key.split("/")[0]}`,
      );
    }
  }
  for (const [key, path] of listing.images) {
    if (!listing.rows.has(key))
      throw new IngestError("BAD_CSV", `${label}: ${path} has no row in ${csvName(key)}`);
  }
}

async function plan(archive: Archive, options: IngestOptions): Promise<Plan> {
  const listings = await list(archive, options.split);
  const split = chooseSplit(listings, options.split, archive.label);
  const listing = listings[split];
  validate(split, listing, archive.label);
  return { split, rows: listing.rows, count: listing.images.size };
}

interface RowImage extends EncodedImage {
  row: GtsrbRow;
}

/** What happens to one image: the CSV's size checked, the ROI cropped, resized, converted. */
function stepsFor(row: GtsrbRow, source: string, options: IngestOptions): ImageSteps {
  const roi = options.cropToRoi;
  return {
    source,
    expectSize: roi
      ? {
          width: row.width,
          height: row.height,
          code: "BAD_CSV",
          because: `its CSV row says ${row.width}x${row.height}; the ROI cannot be trusted`,
        }
      : undefined,
    crop: roi
      ? { left: row.x1, top: row.y1, width: row.x2 - row.x1 + 1, height: row.y2 - row.y1 + 1 }
      : undefined,
    resize: options.resize ?? GTSRB_DEFAULT_SIZE,
    channels: options.channels ?? 3,
  };
}

async function* encodedImages(
  archive: Archive,
  layout: Plan,
  options: IngestOptions,
): AsyncGenerator<RowImage> {
  for await (const member of archive.members()) {
    if (member.isDirectory || isClutter(member.parts)) continue;
    const found = memberRole(member.parts);
    if (found === null || found.role.split !== layout.split || found.role.kind !== "image") continue;
    const row = layout.rows.get(found.role.key);
    if (row === undefined) throw new Error(`${member.path} was not seen when the archive was planned`);
    yield { bytes: await member.read(MAX_IMAGE_FILE_BYTES), row, steps: stepsFor(row, member.path, options) };
  }
}

async function* records(archive: Archive, layout: Plan, options: IngestOptions): AsyncGenerator<ImageRecord> {
  for await (const { item, image } of decodeInOrder(encodedImages(archive, layout, options))) {
    const { data, width, height, channels } = image;
    yield { pixels: data, width, height, channels, label: item.row.classId, source: item.steps.source };
  }
}

export const gtsrbFormat: RecordFormatReader = {
  kind: "records",
  name: "GTSRB",
  parts: ["archive"],
  description:
    "GTSRB's Final_Training or Final_Test layout of PPM images with GT CSVs, in a zip, tar or tar.gz",
  options: ["split", "cropToRoi", "resize", "channels"],
  checkOptions() {},
  async open(
    parts: Record<string, string>,
    limits: FormatLimits,
    options: IngestOptions,
  ): Promise<RecordDataset> {
    const archive = await openArchive(parts.archive as string, limits);
    const layout = await plan(archive, options);
    return {
      count: layout.count,
      numClasses: GTSRB_CLASSES,
      records: () => records(archive, layout, options),
    };
  },
};
