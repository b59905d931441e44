/**
 * Uploaded archives: tar, tar.gz or zip, recognised by their first bytes (never by name), each
 * walked as a stream of members (see member.ts for the contract, tar.ts and zip.ts for what
 * each refuses).
 */

import { open } from "node:fs/promises";
import { basename } from "node:path";
import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";
import type { Archive, ArchiveKind } from "./member.ts";
import { tarMembers } from "./tar.ts";
import { zipMembers } from "./zip.ts";

export type { Archive, ArchiveKind, ArchiveMember } from "./member.ts";
export { isClutter } from "./member-path.ts";

const TAR_MAGIC_OFFSET = 257;

/** tar.gz, zip or tar from the first 512 bytes; null for anything else. */
export function sniffArchive(head: Uint8Array): ArchiveKind | null {
  const b = Buffer.from(head.buffer, head.byteOffset, head.length);
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return "tar.gz";
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && [3, 5, 7].includes(b[2] ?? 0)) return "zip";
  if (
    b.length >= TAR_MAGIC_OFFSET + 5 &&
    b.toString("latin1", TAR_MAGIC_OFFSET, TAR_MAGIC_OFFSET + 5) === "ustar"
  ) {
    return "tar";
  }
  return null;
}

/** Opens an uploaded archive file; BAD_ARCHIVE when it is none of tar, tar.gz, zip. */
export async function openArchive(path: string, limits: FormatLimits, what = "archive"): Promise<Archive> {
  const label = `${what} (${basename(path)})`;
  const file = await open(path, "r");
  const head = Buffer.alloc(512);
  const { bytesRead } = await file.read(head, 0, head.length, 0).finally(() => file.close());
  const kind = sniffArchive(head.subarray(0, bytesRead));
  if (kind === null) {
    throw new IngestError(
      "BAD_ARCHIVE",
      `${label}: not a tar, tar.gz or zip archive (recognised by their first bytes, not by the file name)`,
    );
  }
  return {
    kind,
    label,
    members: () =>
      kind === "zip" ? zipMembers(path, limits, label) : tarMembers(path, kind === "tar.gz", limits, label),
  };
}
