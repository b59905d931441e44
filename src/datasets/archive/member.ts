/**
 * What the archive walkers (tar.ts, zip.ts) hand to format readers: one member at a time, in
 * archive order, never the whole listing (an archive of a million images must not cost a
 * million entries of memory). A format that needs to know something about every member first
 * (class names, counts, CSV rows) makes a planning pass, then a second pass to decode.
 */

import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";

export interface ArchiveMember {
  /** Path components (see member-path.ts): relative, no "..", no empty parts. */
  readonly parts: readonly string[];
  /** parts joined with "/" */
  readonly path: string;
  readonly isDirectory: boolean;
  /** Uncompressed size the archive declares for this member. */
  readonly size: number;
  /**
   * The member's bytes, whole: TOO_LARGE when it declares more than `maxBytes`, TRUNCATED or
   * CORRUPT when its data does not match its header. Only valid until the walk moves on.
   */
  read(maxBytes: number): Promise<Buffer>;
  /**
   * The member's bytes in chunks, for members too large to hold at once. Same validity; read it
   * to the end (stopping early abandons the whole pass).
   */
  chunks(): AsyncIterable<Buffer>;
}

export type ArchiveKind = "tar" | "tar.gz" | "zip";

export interface Archive {
  readonly kind: ArchiveKind;
  /** what the archive is, for messages: e.g. "archive (upload.tar.gz)" */
  readonly label: string;
  /**
   * One pass over the members in archive order. Members the caller does not read are skipped.
   * Breaking out of the loop releases every file and stream of the pass.
   */
  members(): AsyncGenerator<ArchiveMember>;
}

/** Below this many expanded bytes the compression-ratio cap does not apply (nothing to fear). */
export const RATIO_FLOOR = 1 << 20;

/**
 * Zip-bomb guard, checked as bytes expand: an archive may not expand past `maxBytes`, nor past
 * `maxCompressionRatio` times its size on disk (beyond a 1 MiB floor, so tiny archives of
 * zeros are fine). Returns the error to throw, or null.
 */
export function expansionError(
  expanded: number,
  onDisk: number,
  limits: FormatLimits,
  label: string,
): IngestError | null {
  if (expanded > limits.maxBytes) {
    return new IngestError(
      "TOO_LARGE",
      `${label}: the archive expands to more than ${limits.maxBytes} bytes, the limit`,
    );
  }
  if (expanded > RATIO_FLOOR && expanded > limits.maxCompressionRatio * onDisk) {
    return new IngestError(
      "TOO_LARGE",
      `${label}: the archive expands more than ${limits.maxCompressionRatio}x (${onDisk} bytes on disk, over ${expanded} expanded); refusing a likely zip bomb`,
    );
  }
  return null;
}

/** TOO_LARGE when a member declares more bytes than the caller will hold. */
export function checkMemberSize(size: number, maxBytes: number, what: string): void {
  if (size > maxBytes) {
    throw new IngestError("TOO_LARGE", `${what} is ${size} bytes; at most ${maxBytes} are read for one file`);
  }
}
