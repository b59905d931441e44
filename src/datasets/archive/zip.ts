/**
 * zip archives (GTSRB's own distribution format, and what desktops make of a folder), read with
 * yauzl one central-directory entry at a time: memory does not depend on the member count.
 *
 * Refused: symlinks and devices (Unix mode bits in the external attributes; UNSAFE_ENTRY),
 * unsafe names (UNSAFE_PATH), encrypted members and methods other than stored/deflate
 * (BAD_ARCHIVE), archives whose declared sizes add up past the limits (TOO_LARGE, before any
 * member is inflated; yauzl then holds each member to its declared size), members whose CRC-32
 * does not match (CORRUPT), and files without an end-of-central-directory record (TRUNCATED:
 * a zip's directory is at its end, so that is what a cut-short upload looks like).
 */

import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import * as zlib from "node:zlib";
import yauzl, { type Entry, type ZipFile } from "yauzl";
import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";
import { type ArchiveMember, checkMemberSize, expansionError } from "./member.ts";
import { checkFileParts, memberParts } from "./member-path.ts";

const crc32: ((data: Uint8Array, value?: number) => number) | undefined = (
  zlib as { crc32?: (data: Uint8Array, value?: number) => number }
).crc32;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const MADE_BY_UNIX = 3;

function zipError(error: unknown, what: string): Error {
  if (error instanceof IngestError) return error;
  const e = error as NodeJS.ErrnoException;
  const message = e instanceof Error ? e.message : String(error);
  if (e.code === "Z_BUF_ERROR") {
    return new IngestError("TRUNCATED", `${what}: the compressed data ends early (${message})`);
  }
  if (
    (typeof e.code === "string" && e.code.startsWith("Z_")) ||
    /bytes in the stream|overflows/.test(message)
  ) {
    return new IngestError("CORRUPT", `${what}: the data is corrupt (${message})`);
  }
  return new IngestError("BAD_ARCHIVE", `${what}: ${message}`);
}

async function openZip(path: string, label: string): Promise<ZipFile> {
  try {
    return await yauzl.openPromise(path, {
      lazyEntries: true,
      autoClose: false,
      decodeStrings: false, // names are decoded and checked by memberParts
      validateEntrySizes: true,
    });
  } catch (e) {
    const message = (e as Error).message;
    if (/end of central directory record signature not found/i.test(message)) {
      throw new IngestError(
        "TRUNCATED",
        `${label}: the zip archive has no end-of-central-directory record; the upload is incomplete`,
      );
    }
    throw new IngestError("BAD_ARCHIVE", `${label}: not a valid zip archive (${message})`);
  }
}

/** Links, devices and FIFOs carry their type in the Unix mode of zips made on Unix. */
function unixType(entry: Entry): number {
  if (entry.versionMadeBy >> 8 !== MADE_BY_UNIX) return 0;
  return ((entry.externalFileAttributes >>> 16) & S_IFMT) >>> 0;
}

function checkEntry(entry: Entry, name: string, label: string): void {
  const type = unixType(entry);
  if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) {
    const kind = type === 0o120000 ? "symbolic link" : "device or special file";
    throw new IngestError(
      "UNSAFE_ENTRY",
      `${label}: member ${JSON.stringify(name)} is a ${kind}; archives may hold only regular files and folders`,
    );
  }
  if (entry.isEncrypted()) {
    throw new IngestError("BAD_ARCHIVE", `${label}: member ${JSON.stringify(name)} is encrypted`);
  }
  if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
    throw new IngestError(
      "BAD_ARCHIVE",
      `${label}: member ${JSON.stringify(name)} uses compression method ${entry.compressionMethod}; only stored and deflate are read`,
    );
  }
}

/** One pass over a zip archive's members, in central-directory order. */
export async function* zipMembers(
  path: string,
  limits: FormatLimits,
  label: string,
): AsyncGenerator<ArchiveMember> {
  const { size: onDisk } = await stat(path);
  const zip = await openZip(path, label);
  let declared = 0;
  const open: Readable[] = [];
  try {
    const entries = zip.eachEntry();
    for (;;) {
      let next: IteratorResult<Entry>;
      try {
        next = await entries.next();
      } catch (e) {
        throw new IngestError(
          "BAD_ARCHIVE",
          `${label}: the archive's directory is malformed (${(e as Error).message})`,
        );
      }
      if (next.done) break;
      const entry = next.value;
      const name = yauzl.getFileNameLowLevel(
        entry.generalPurposeBitFlag,
        entry.fileNameRaw,
        entry.extraFields,
        false,
      );
      const parts = memberParts(name, label);
      const isDirectory = name.endsWith("/");
      if (!isDirectory) checkFileParts(parts, name, label);
      checkEntry(entry, name, label);
      declared += entry.uncompressedSize;
      const tooMuch = expansionError(declared, onDisk, limits, label);
      if (tooMuch !== null) throw tooMuch;
      const what = `${label}: ${parts.join("/")}`;
      const chunks = async function* (): AsyncGenerator<Buffer> {
        let stream: Readable;
        try {
          stream = await zip.openReadStreamPromise(entry);
        } catch (e) {
          throw zipError(e, what);
        }
        open.push(stream);
        let crc = 0;
        try {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            if (crc32) crc = crc32(chunk, crc);
            yield chunk;
          }
        } catch (e) {
          throw zipError(e, what);
        } finally {
          stream.destroy();
          open.splice(open.indexOf(stream), 1);
        }
        if (crc32 && crc >>> 0 !== entry.crc32 >>> 0) {
          throw new IngestError("CORRUPT", `${what}: CRC-32 mismatch; the archive is corrupt`);
        }
      };
      const member: ArchiveMember = {
        parts,
        path: parts.join("/"),
        isDirectory,
        size: entry.uncompressedSize,
        async read(maxBytes: number) {
          checkMemberSize(entry.uncompressedSize, maxBytes, what);
          const out = Buffer.allocUnsafe(entry.uncompressedSize);
          let at = 0;
          for await (const chunk of chunks()) {
            if (at + chunk.length > out.length) {
              throw new IngestError("CORRUPT", `${what} holds more than the ${out.length} bytes it declares`);
            }
            chunk.copy(out, at);
            at += chunk.length;
          }
          return out;
        },
        chunks,
      };
      yield member;
    }
  } finally {
    for (const stream of open) stream.destroy();
    if (zip.isOpen) zip.close();
  }
}
