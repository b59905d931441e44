/**
 * CIFAR10_BINARY: the "CIFAR-10 binary version" archive as distributed (cifar-10-binary.tar.gz;
 * also accepted uncompressed as .tar, or as a zip), part `archive`:
 *
 *   cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin   the TRAIN split (50 000)
 *   cifar-10-batches-bin/test_batch.bin                           the TEST split (10 000)
 *   cifar-10-batches-bin/batches.meta.txt                         class names, one per line
 *
 * Each batch is a run of 3073-byte records: one label byte, then 1024 red, 1024 green and 1024
 * blue bytes (32×32, row major). Records are stored as 32×32×3 in batch order 1..5 whatever
 * the order inside the archive, so indices match torchvision's CIFAR10.
 *
 * Option `split` (required): TRAIN or TEST. Class names come from batches.meta.txt (its
 * non-empty lines); without it they are "0".."9". A label at or above the number of classes is
 * LABEL_OUT_OF_RANGE; a batch that is not a whole number of records is TRUNCATED (CIFAR-100's
 * binary format, with two label bytes, is not this format).
 */

import { type Archive, type ArchiveMember, isClutter, openArchive } from "../archive/index.ts";
import { IngestError } from "../ingest-error.ts";
import type { DatasetSplit, IngestOptions } from "../options.ts";
import type { FormatLimits } from "../types.ts";
import type { ImageRecord, RecordDataset, RecordFormatReader } from "./reader.ts";

const SIDE = 32;
const PLANE = SIDE * SIDE;
const RECORD_BYTES = 1 + 3 * PLANE;
const META_FILE = "batches.meta.txt";
const MAX_META_BYTES = 1 << 20;
const DEFAULT_CLASSES = 10;

export const CIFAR_BATCHES: Readonly<Record<DatasetSplit, readonly string[]>> = {
  TRAIN: ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
  TEST: ["test_batch.bin"],
};

interface Batch {
  name: string;
  path: string;
  records: number;
}

interface Plan {
  batches: Batch[];
  classNames?: string[];
}

function parseMeta(bytes: Buffer, label: string): string[] {
  const text = bytes.toString("utf8");
  if (text.includes("\0") || text.includes("\uFFFD")) {
    throw new IngestError("BAD_CLASS_NAMES", `${label}: ${META_FILE} is not a text file of class names`);
  }
  const names = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "");
  if (names.length < 2) {
    throw new IngestError(
      "BAD_CLASS_NAMES",
      `${label}: ${META_FILE} names ${names.length} class(es); at least 2 are needed`,
    );
  }
  return names;
}

/** Planning pass: finds the split's batches (sizes only) and reads the class names. */
async function plan(archive: Archive, split: DatasetSplit): Promise<Plan> {
  const wanted = CIFAR_BATCHES[split];
  const found = new Map<string, Batch>();
  let classNames: string[] | undefined;
  let metaPath: string | undefined;
  const twice = (name: string, a: string, b: string) =>
    new IngestError("BAD_ARCHIVE", `${archive.label}: ${name} appears twice (${a} and ${b})`);
  for await (const member of archive.members()) {
    if (member.isDirectory || isClutter(member.parts)) continue;
    const name = member.parts.at(-1) as string;
    if (name === META_FILE) {
      if (metaPath !== undefined) throw twice(name, metaPath, member.path);
      metaPath = member.path;
      classNames = parseMeta(await member.read(MAX_META_BYTES), archive.label);
    } else if (wanted.includes(name)) {
      const seen = found.get(name);
      if (seen !== undefined) throw twice(name, seen.path, member.path);
      if (member.size === 0 || member.size % RECORD_BYTES !== 0) {
        throw new IngestError(
          "TRUNCATED",
          `${archive.label}: ${member.path} holds ${member.size} bytes, not a whole number of ${RECORD_BYTES}-byte records (1 label byte + 32x32x3 pixels)`,
        );
      }
      found.set(name, { name, path: member.path, records: member.size / RECORD_BYTES });
    }
  }
  const missing = wanted.filter((name) => !found.has(name));
  if (missing.length > 0) {
    throw new IngestError(
      "MISSING_FILE",
      `${archive.label}: no ${missing.join(", ")}; the ${split} split of CIFAR10_BINARY is ${wanted.join(", ")} (in cifar-10-batches-bin/)`,
    );
  }
  return { batches: wanted.map((name) => found.get(name) as Batch), classNames };
}

/** The records of one batch member, converted to H×W×C; checks every label. */
async function* batchRecords(
  member: ArchiveMember,
  batch: Batch,
  numClasses: number,
): AsyncGenerator<ImageRecord> {
  const record = Buffer.alloc(RECORD_BYTES);
  const pixels = Buffer.alloc(3 * PLANE);
  let filled = 0;
  let index = 0;
  for await (const chunk of member.chunks()) {
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(RECORD_BYTES - filled, chunk.length - at);
      chunk.copy(record, filled, at, at + take);
      filled += take;
      at += take;
      if (filled < RECORD_BYTES) break;
      filled = 0;
      const label = record[0] as number;
      if (label >= numClasses) {
        throw new IngestError(
          "LABEL_OUT_OF_RANGE",
          `${member.path}: record ${index} has label ${label}; there are ${numClasses} classes (0..${numClasses - 1})`,
        );
      }
      for (let p = 0, o = 0; p < PLANE; p++) {
        pixels[o++] = record[1 + p] as number;
        pixels[o++] = record[1 + PLANE + p] as number;
        pixels[o++] = record[1 + 2 * PLANE + p] as number;
      }
      yield {
        pixels,
        width: SIDE,
        height: SIDE,
        channels: 3,
        label,
        source: `${batch.name} record ${index}`,
      };
      index++;
    }
  }
  if (index !== batch.records) {
    throw new IngestError("TRUNCATED", `${member.path}: ${index} of its ${batch.records} records were read`);
  }
}

/**
 * The batches in split order. One pass over the archive emits every wanted batch it meets in
 * order; a batch stored before its predecessor is picked up by a further pass (the distributed
 * tar needs two), so nothing is buffered.
 */
async function* splitRecords(
  archive: Archive,
  layout: Plan,
  numClasses: number,
): AsyncGenerator<ImageRecord> {
  let next = 0;
  while (next < layout.batches.length) {
    const before = next;
    for await (const member of archive.members()) {
      const batch = layout.batches[next];
      if (batch === undefined) break;
      if (member.path !== batch.path || member.isDirectory) continue;
      yield* batchRecords(member, batch, numClasses);
      next++;
    }
    if (next === before) throw new Error(`${layout.batches[next]?.path} vanished from ${archive.label}`);
  }
}

function requireSplit(options: IngestOptions): void {
  if (options.split === undefined) {
    throw new IngestError(
      "BAD_OPTION",
      "CIFAR10_BINARY needs the option split: TRAIN (data_batch_1..5) or TEST (test_batch)",
      "split",
    );
  }
}

export const cifar10BinaryFormat: RecordFormatReader = {
  kind: "records",
  name: "CIFAR10_BINARY",
  parts: ["archive"],
  description:
    "the CIFAR-10 binary archive (cifar-10-binary.tar.gz, .tar or .zip); option split: TRAIN or TEST",
  options: ["split"],
  checkOptions: requireSplit,
  async open(
    parts: Record<string, string>,
    limits: FormatLimits,
    options: IngestOptions,
  ): Promise<RecordDataset> {
    requireSplit(options);
    const archive = await openArchive(parts.archive as string, limits);
    const layout = await plan(archive, options.split as DatasetSplit);
    const numClasses = layout.classNames?.length ?? DEFAULT_CLASSES;
    return {
      count: layout.batches.reduce((sum, batch) => sum + batch.records, 0),
      classNames: layout.classNames,
      numClasses,
      records: () => splitRecords(archive, layout, numClasses),
    };
  },
};
