/**
 * The canonical dataset: the one on-disk layout every ingest path writes and the trainer reads
 * (trainer/trapdoor_trainer/data.py `load_canonical`).
 *
 *   images.npy     NPY v1.0, descr '|u1', C order, shape (N, H, W, C)
 *   labels.npy     NPY v1.0, descr '<i8', shape (N,)
 *   manifest.json  {count, height, width, channels, numClasses, classNames,
 *                   sha256: {"images.npy", "labels.npy"}, sourceFormat, classHistogram}
 *
 * This module names the files, types the manifest and reads (and verifies) a stored one;
 * canonical-writer.ts writes a dataset.
 */

import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { IngestError } from "./ingest-error.ts";
import { sha256File } from "./sha256.ts";
import type { DatasetFormat } from "./types.ts";

export interface CanonicalManifest {
  count: number;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  classNames: string[];
  sha256: Record<string, string>;
  sourceFormat: DatasetFormat;
  classHistogram: number[];
}

/**
 * A manifest as found on disk. Datasets written by the trainer's `poison` command carry extra
 * keys (`poison`, `asrFor`, a `poison_mask.npy` hash) and no `sourceFormat`/`classHistogram`.
 */
export interface StoredManifest extends Omit<CanonicalManifest, "sourceFormat" | "classHistogram"> {
  sourceFormat?: string;
  classHistogram?: number[];
  [key: string]: unknown;
}

export interface CanonicalShape {
  count: number;
  height: number;
  width: number;
  channels: number;
}

export const IMAGES_FILE = "images.npy";
export const LABELS_FILE = "labels.npy";
export const MANIFEST_FILE = "manifest.json";

/** Upper bound on classes: keeps the class histogram (and manifest) small whatever the labels say. */
export const MAX_CLASSES = 100_000;

function isCount(value: unknown, min: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min;
}

/**
 * Reads and checks `dir/manifest.json`. With `verify`, re-hashes every file named in `sha256`
 * (streamed) and fails with CORRUPT on a mismatch.
 */
export async function readManifest(dir: string, options: { verify?: boolean } = {}): Promise<StoredManifest> {
  const path = join(dir, MANIFEST_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    const why =
      (e as NodeJS.ErrnoException).code === "ENOENT" ? "is missing" : `is not valid JSON (${String(e)})`;
    throw new IngestError("BAD_MANIFEST", `${path} ${why}`);
  }
  const bad = (what: string) => new IngestError("BAD_MANIFEST", `${path}: ${what}`);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw bad("not a JSON object");
  const m = parsed as Record<string, unknown>;
  for (const key of ["count", "height", "width", "channels"] as const) {
    if (!isCount(m[key], 1)) throw bad(`${key} must be a positive integer`);
  }
  if (!isCount(m.numClasses, 1)) throw bad("numClasses must be a positive integer");
  const classNames = m.classNames ?? Array.from({ length: m.numClasses }, (_, i) => String(i));
  if (!Array.isArray(classNames) || !classNames.every((n) => typeof n === "string")) {
    throw bad("classNames must be a list of strings");
  }
  if (classNames.length !== m.numClasses) throw bad("classNames must have numClasses entries");
  const sha = m.sha256;
  if (
    typeof sha !== "object" ||
    sha === null ||
    !Object.entries(sha).every(
      ([k, v]) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v) && basename(k) === k,
    )
  ) {
    throw bad("sha256 must map file names to hex digests");
  }
  if (m.classHistogram !== undefined) {
    const h = m.classHistogram;
    if (!Array.isArray(h) || h.length !== m.numClasses || !h.every((v) => isCount(v, 0))) {
      throw bad("classHistogram must hold one count per class");
    }
  }
  if (m.sourceFormat !== undefined && typeof m.sourceFormat !== "string")
    throw bad("sourceFormat must be a string");
  if (options.verify) {
    for (const [name, expected] of Object.entries(sha as Record<string, string>)) {
      const actual = await sha256File(join(dir, name));
      if (actual !== expected) {
        throw new IngestError(
          "CORRUPT",
          `${name} does not match the sha256 in its manifest (corrupted or replaced)`,
        );
      }
    }
  }
  return { ...m, classNames } as StoredManifest;
}
