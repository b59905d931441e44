/**
 * Ingest options: how an archive format is decoded (which split, what size, how many channels,
 * whether to crop). One place checks them, for the API (at upload time, so a mistake is a
 * BAD_USER_INPUT naming the field) and for ingest itself (a stored dataset re-ingested later).
 *
 * Each format lists the options it takes; any other option is refused rather than ignored, so a
 * user never believes an image was resized when it was not.
 */

import { IngestError } from "./ingest-error.ts";

export type DatasetSplit = "TRAIN" | "TEST";

export interface ImageSize {
  width: number;
  height: number;
}

export interface IngestOptions {
  /** CIFAR10_BINARY, GTSRB: which split of the archive to read. */
  split?: DatasetSplit;
  /** CLASS_FOLDERS, GTSRB: every image is resized to exactly this size. */
  resize?: ImageSize;
  /** CLASS_FOLDERS, GTSRB: 1 (grey) or 3 (RGB); every image is converted to it. */
  channels?: 1 | 3;
  /** GTSRB: crop each image to its CSV region of interest before resizing. */
  cropToRoi?: boolean;
}

export type IngestOptionName = keyof IngestOptions;

/** Largest side accepted for `resize`. */
export const MAX_RESIZE_SIDE = 4096;

const NAMES: readonly IngestOptionName[] = ["split", "resize", "channels", "cropToRoi"];

function badOption(field: string, message: string): IngestError {
  return new IngestError("BAD_OPTION", message, field);
}

function side(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_RESIZE_SIDE) {
    throw badOption(field, `${field} must be an integer from 1 to ${MAX_RESIZE_SIDE}, got ${String(value)}`);
  }
  return value;
}

/**
 * Checks raw options (from GraphQL or a stored row) against what `format` accepts and returns
 * them with absent and null entries dropped. Throws IngestError BAD_OPTION with `field` set.
 */
export function parseIngestOptions(
  format: string,
  accepted: readonly IngestOptionName[],
  raw: unknown,
): IngestOptions {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) throw badOption("options", "options must be an object");
  const given = raw as Record<string, unknown>;
  const out: IngestOptions = {};
  for (const [name, value] of Object.entries(given)) {
    if (value === undefined || value === null) continue;
    if (!(NAMES as readonly string[]).includes(name)) {
      throw badOption(name, `unknown option ${JSON.stringify(name)}; options are ${NAMES.join(", ")}`);
    }
    if (!accepted.includes(name as IngestOptionName)) {
      const takes = accepted.length > 0 ? `it takes ${accepted.join(", ")}` : "it takes no options";
      throw badOption(name, `format ${format} does not take the option ${name}; ${takes}`);
    }
  }
  const { split, resize, channels, cropToRoi } = given;
  if (split !== undefined && split !== null) {
    if (split !== "TRAIN" && split !== "TEST") {
      throw badOption("split", `split must be TRAIN or TEST, got ${JSON.stringify(split)}`);
    }
    out.split = split;
  }
  if (resize !== undefined && resize !== null) {
    if (typeof resize !== "object" || Array.isArray(resize)) {
      throw badOption("resize", "resize must be {width, height}");
    }
    const size = resize as Record<string, unknown>;
    out.resize = { width: side("resize.width", size.width), height: side("resize.height", size.height) };
  }
  if (channels !== undefined && channels !== null) {
    if (channels !== 1 && channels !== 3) {
      throw badOption("channels", `channels must be 1 (grey) or 3 (RGB), got ${String(channels)}`);
    }
    out.channels = channels;
  }
  if (cropToRoi !== undefined && cropToRoi !== null) {
    if (typeof cropToRoi !== "boolean") throw badOption("cropToRoi", "cropToRoi must be true or false");
    out.cropToRoi = cropToRoi;
  }
  return out;
}
