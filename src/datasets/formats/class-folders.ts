/**
 * CLASS_FOLDERS: one archive (zip, tar or tar.gz; part `archive`) of images in folders named
 * after their class, `<class>/<file>` or `<root>/<class>/<file>` (ImageNet / torchvision
 * ImageFolder style).
 *
 * - Images are .png, .jpg, .jpeg, .ppm, .pgm, .pnm files (any case), decoded by content.
 * - Classes are the folder names sorted by Unicode code point (as Python's sorted() and
 *   torchvision's ImageFolder do); label = index in that order. At least 2 classes.
 * - Images are stored in archive order.
 * - Options: `resize` {width, height} (bilinear, see images/decode.ts; default none, and then
 *   every image must have one size: MIXED_SIZES); `channels` 1 or 3 (default: the first image's;
 *   a later image with another count is MIXED_CHANNELS unless the option is set, which converts
 *   every image).
 * - Skipped silently: hidden files and folders, __MACOSX, Thumbs.db, and files next to the
 *   class folders (a README). Refused: images at the archive's top level or at mixed depths,
 *   class folders under several roots, nested folders (BAD_LAYOUT), a folder among the class
 *   folders with no images, empty or holding only other files (EMPTY_CLASS), other files
 *   beside images in a class folder (UNSUPPORTED_IMAGE).
 *
 * A planning pass reads only the member list (memory: one counter per folder); the second pass
 * decodes the images, a few at a time.
 */

import { basename, extname } from "node:path";
import { type Archive, isClutter, openArchive } from "../archive/index.ts";
import { MAX_CLASSES } from "../canonical.ts";
import { MAX_IMAGE_FILE_BYTES } from "../images/decode.ts";
import { decodeInOrder, type EncodedImage } from "../images/decode-pool.ts";
import { IngestError } from "../ingest-error.ts";
import type { IngestOptions } from "../options.ts";
import type { FormatLimits } from "../types.ts";
import type { ImageRecord, RecordDataset, RecordFormatReader } from "./reader.ts";

export const IMAGE_EXTENSIONS: readonly string[] = [".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm"];

export function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/** Code point order: UTF-8 bytes compare as code points do (JavaScript's sort compares UTF-16 units). */
export function byCodePoint(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

interface Plan {
  count: number;
  classNames: string[];
  /** folder path → label */
  labels: Map<string, number>;
}

function layoutError(message: string): IngestError {
  return new IngestError(
    "BAD_LAYOUT",
    `${message}; CLASS_FOLDERS expects <class>/<image> or <root>/<class>/<image>`,
  );
}

/** Planning pass: counts images per folder, then settles the layout and the classes. */
async function plan(archive: Archive): Promise<Plan> {
  const imagesPerFolder = new Map<string, number>();
  const exampleAtDepth = new Map<number, string>();
  const otherFileIn = new Map<string, string>();
  const folders = new Set<string>();
  for await (const member of archive.members()) {
    if (isClutter(member.parts)) continue;
    if (member.isDirectory) {
      if (folders.size < MAX_CLASSES) folders.add(member.path);
      continue;
    }
    const folder = member.parts.slice(0, -1).join("/");
    if (isImageName(member.path)) {
      const depth = member.parts.length - 1;
      if (!exampleAtDepth.has(depth)) exampleAtDepth.set(depth, member.path);
      imagesPerFolder.set(folder, (imagesPerFolder.get(folder) ?? 0) + 1);
      if (imagesPerFolder.size > MAX_CLASSES) {
        throw new IngestError("TOO_MANY_CLASSES", `${archive.label}: more than ${MAX_CLASSES} image folders`);
      }
    } else if (!otherFileIn.has(folder) && otherFileIn.size < MAX_CLASSES) {
      otherFileIn.set(folder, member.path);
    }
  }
  if (imagesPerFolder.size === 0) {
    throw new IngestError(
      "EMPTY",
      `${archive.label}: no images found (looked for ${IMAGE_EXTENSIONS.join(" ")} files in class folders)`,
    );
  }
  const topLevel = exampleAtDepth.get(0);
  if (topLevel !== undefined) {
    throw layoutError(`${archive.label}: the image ${topLevel} is not in a class folder`);
  }
  const depths = [...exampleAtDepth.keys()].sort();
  if (depths.length > 1) {
    const examples = depths.map((d) => exampleAtDepth.get(d)).join(" and ");
    throw layoutError(`${archive.label}: images lie at different folder depths (${examples})`);
  }
  const depth = depths[0] as number;
  if (depth > 2) {
    throw layoutError(`${archive.label}: images lie ${depth} folders deep (${exampleAtDepth.get(depth)})`);
  }
  const classFolders = [...imagesPerFolder.keys()];
  if (depth === 2) {
    const roots = [...new Set(classFolders.map((f) => f.split("/")[0] as string))].sort(byCodePoint);
    if (roots.length > 1) {
      throw layoutError(
        `${archive.label}: class folders lie under several top-level folders (${roots.slice(0, 5).join(", ")}); upload one split per archive`,
      );
    }
  }
  const root = depth === 2 ? `${classFolders[0]?.split("/")[0]}/` : "";
  // A folder where class folders are, explicit or holding only other files, is an empty class.
  for (const folder of [...folders, ...otherFileIn.keys()]) {
    const inClassPosition = folder !== "" && folder.startsWith(root) && folder.split("/").length === depth;
    if (inClassPosition && !imagesPerFolder.has(folder)) {
      throw new IngestError("EMPTY_CLASS", `${archive.label}: the class folder ${folder}/ holds no images`);
    }
  }
  for (const folder of classFolders) {
    const other = otherFileIn.get(folder);
    if (other !== undefined) {
      throw new IngestError(
        "UNSUPPORTED_IMAGE",
        `${archive.label}: ${other} is not an image this format reads (${IMAGE_EXTENSIONS.join(" ")}); remove it from the class folder`,
      );
    }
  }
  const byName = new Map(classFolders.map((folder) => [basename(folder), folder]));
  const classNames = [...byName.keys()].sort(byCodePoint);
  if (classNames.length < 2) {
    throw new IngestError(
      "BAD_NUM_CLASSES",
      `${archive.label}: only one class folder (${classNames[0]}); a classifier needs at least 2`,
    );
  }
  const labels = new Map(classNames.map((name, label) => [byName.get(name) as string, label]));
  let count = 0;
  for (const n of imagesPerFolder.values()) count += n;
  return { count, classNames, labels };
}

interface LabelledImage extends EncodedImage {
  label: number;
}

/** Second pass: the image files with their labels, read one at a time. */
async function* encodedImages(
  archive: Archive,
  layout: Plan,
  options: IngestOptions,
): AsyncGenerator<LabelledImage> {
  for await (const member of archive.members()) {
    if (member.isDirectory || isClutter(member.parts) || !isImageName(member.path)) continue;
    const label = layout.labels.get(member.parts.slice(0, -1).join("/"));
    if (label === undefined) throw new Error(`${member.path} was not seen when the archive was planned`);
    yield {
      bytes: await member.read(MAX_IMAGE_FILE_BYTES),
      label,
      steps: { source: member.path, resize: options.resize, channels: options.channels },
    };
  }
}

export const classFoldersFormat: RecordFormatReader = {
  kind: "records",
  name: "CLASS_FOLDERS",
  parts: ["archive"],
  description: "a zip, tar or tar.gz of PNG/JPEG/PPM images in one folder per class",
  options: ["resize", "channels"],
  checkOptions() {},
  async open(
    parts: Record<string, string>,
    limits: FormatLimits,
    options: IngestOptions,
  ): Promise<RecordDataset> {
    const archive = await openArchive(parts.archive as string, limits);
    const layout = await plan(archive);
    async function* records(): AsyncGenerator<ImageRecord> {
      for await (const { item, image } of decodeInOrder(encodedImages(archive, layout, options))) {
        const { data, width, height, channels } = image;
        yield { pixels: data, width, height, channels, label: item.label, source: item.steps.source };
      }
    }
    return { count: layout.count, classNames: layout.classNames, records };
  },
};
