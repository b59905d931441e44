/**
 * Decoded images → a canonical dataset: the sink every "records" format (formats/index.ts)
 * streams into. The first record fixes H×W×C; every later one must match it (MIXED_SIZES,
 * MIXED_CHANNELS: the formats decide sizes and channels, this is where a mismatch surfaces
 * with both file names). Pixels and labels are gathered into chunks of about 8 MiB before they
 * are written, so per-image writes never reach the disk one by one and memory stays bounded.
 * Two chunks take turns: one is written (and hashed) while the next fills, so decoding does not
 * stop for the disk.
 */

import type { CanonicalManifest } from "./canonical.ts";
import { CanonicalWriter, type CanonicalWriterOptions } from "./canonical-writer.ts";
import type { ImageRecord } from "./formats/index.ts";
import { IngestError } from "./ingest-error.ts";
import type { DatasetFormat, FormatLimits } from "./types.ts";

const CHUNK_BYTES = 8 << 20;

export interface RecordSinkOptions {
  /** How many records will arrive (the NPY headers are written first). */
  count: number;
  classOptions: CanonicalWriterOptions;
  sourceFormat: DatasetFormat;
  /** Largest single image accepted, in bytes (H×W×C). */
  maxImageBytes: number;
  /** Caps on the whole decoded dataset (checked when the first image gives its shape). */
  limits?: Pick<FormatLimits, "maxDecodedBytes" | "quotaBytesLeft">;
}

function shapeOf(record: ImageRecord): string {
  return `${record.width}x${record.height}`;
}

/** Writes `records` into a new canonical dataset at `outDir`; on any error nothing is left there. */
export async function writeRecords(
  records: AsyncIterable<ImageRecord>,
  outDir: string,
  options: RecordSinkOptions,
): Promise<CanonicalManifest> {
  let writer: CanonicalWriter | undefined;
  let first: ImageRecord | undefined;
  let imageBytes = 0;
  let chunk = Buffer.alloc(0);
  let labels = new Float64Array(0);
  let spare = { chunk, labels };
  let held = 0;
  let seen = 0;
  /** the other chunk's write, still running */
  let writing: Promise<void> = Promise.resolve();
  const flush = async () => {
    if (writer === undefined || held === 0) return;
    await writing;
    const out = writer;
    const images = chunk.subarray(0, held * imageBytes);
    const labelValues = labels.subarray(0, held);
    writing = (async () => {
      await out.appendImages(images);
      await out.appendLabels(labelValues);
    })();
    // a failure is seen at the next flush or at the end; this only keeps it from being "unhandled"
    writing.catch(() => undefined);
    [chunk, labels, spare] = [spare.chunk, spare.labels, { chunk, labels }];
    held = 0;
  };
  try {
    for await (const record of records) {
      if (first === undefined) {
        first = { ...record, pixels: new Uint8Array(0) };
        imageBytes = record.width * record.height * record.channels;
        if (imageBytes > options.maxImageBytes) {
          throw new IngestError(
            "TOO_LARGE",
            `${record.source}: one image takes ${imageBytes} bytes; the limit is ${options.maxImageBytes} (resize the images)`,
          );
        }
        writer = await CanonicalWriter.open(
          outDir,
          { count: options.count, height: record.height, width: record.width, channels: record.channels },
          options.classOptions,
          options.limits,
        );
        const perChunk = Math.max(1, Math.min(options.count, Math.floor(CHUNK_BYTES / imageBytes)));
        chunk = Buffer.alloc(perChunk * imageBytes);
        labels = new Float64Array(perChunk);
        spare = { chunk: Buffer.alloc(perChunk * imageBytes), labels: new Float64Array(perChunk) };
      } else if (record.width !== first.width || record.height !== first.height) {
        throw new IngestError(
          "MIXED_SIZES",
          `${record.source} is ${shapeOf(record)} but ${first.source} is ${shapeOf(first)}; every image must have one size (set the resize option to bring them to one)`,
        );
      } else if (record.channels !== first.channels) {
        throw new IngestError(
          "MIXED_CHANNELS",
          `${record.source} has ${record.channels} channel(s) but ${first.source} has ${first.channels}; set the channels option (1 or 3) to convert every image`,
        );
      }
      if (record.pixels.length !== imageBytes) {
        throw new Error(
          `${record.source}: ${record.pixels.length} pixel bytes for a ${shapeOf(record)}x${record.channels} image`,
        );
      }
      seen++;
      if (seen > options.count) {
        throw new IngestError(
          "COUNT_MISMATCH",
          `more than the ${options.count} images counted in the upload`,
        );
      }
      chunk.set(record.pixels, held * imageBytes);
      labels[held] = record.label;
      held++;
      if (held === labels.length) await flush();
    }
    if (writer === undefined) throw new IngestError("EMPTY", "the upload holds no images");
    await flush();
    await writing;
    return await writer.finish({ sourceFormat: options.sourceFormat });
  } catch (e) {
    await writing.catch(() => undefined);
    await writer?.abort();
    throw e;
  }
}
