/**
 * tar and tar.gz archives, read as one stream per pass (tar-stream over zlib): memory does not
 * depend on the archive's size or member count.
 *
 * Refused: links, devices and FIFOs (UNSAFE_ENTRY), unsafe names (UNSAFE_PATH), archives that
 * expand past the limits (TOO_LARGE, checked on the decompressed bytes as they arrive), and
 * archives that stop early (TRUNCATED): a gzip stream cut short, a member cut short, or a tar
 * without its end-of-archive blocks (two zero blocks, which every tar writer emits).
 */

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline, Transform, type TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";
import { IngestError } from "../ingest-error.ts";
import type { FormatLimits } from "../types.ts";
import { type ArchiveMember, checkMemberSize, expansionError } from "./member.ts";
import { checkFileParts, memberParts } from "./member-path.ts";

const BLOCK = 512;
const READ_CHUNK = 1 << 20;

/** tar-stream's and zlib's errors, as the user-fixable problems they are. */
function tarError(error: unknown, label: string): Error {
  if (error instanceof IngestError) return error;
  const e = error as NodeJS.ErrnoException;
  const message = e instanceof Error ? e.message : String(error);
  if (e.code === "Z_BUF_ERROR" || /unexpected end of (file|data)/i.test(message)) {
    return new IngestError(
      "TRUNCATED",
      `${label}: the archive ends early (${message}); the upload is incomplete`,
    );
  }
  if (typeof e.code === "string" && e.code.startsWith("Z_")) {
    return new IngestError("CORRUPT", `${label}: the gzip data is corrupt (${message})`);
  }
  if (/tar header|header exceeds|invalid header/i.test(message)) {
    return new IngestError("BAD_ARCHIVE", `${label}: not a valid tar archive (${message})`);
  }
  return e instanceof Error ? e : new Error(message);
}

/** Counts the (decompressed) tar bytes and stops the stream when they pass the limits. */
class ExpansionGuard extends Transform {
  total = 0;
  constructor(
    private readonly onDisk: number,
    private readonly limits: FormatLimits,
    private readonly label: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.total += chunk.length;
    callback(expansionError(this.total, this.onDisk, this.limits, this.label), chunk);
  }
}

type TarEntry = AsyncIterable<Buffer> & {
  header: tar.Header;
  offset: number;
};

const READABLE_TYPES = new Set(["file", "contiguous-file", "directory"]);

/** One pass over a tar (gzipped or not) archive's members. */
export async function* tarMembers(
  path: string,
  gzipped: boolean,
  limits: FormatLimits,
  label: string,
): AsyncGenerator<ArchiveMember> {
  const { size: onDisk } = await stat(path);
  const file = createReadStream(path, { highWaterMark: READ_CHUNK });
  const guard = new ExpansionGuard(onDisk, limits, label);
  const extract = tar.extract();
  // tar-stream's streams are not Node streams, so Node's pipeline stops at the guard and the
  // guard is piped by hand; a failure upstream destroys the extractor with the cause.
  const feed = gzipped ? [file, createGunzip(), guard] : [file, guard];
  pipeline(feed, (error) => {
    if (error) extract.destroy(error);
  });
  guard.pipe(extract as unknown as NodeJS.WritableStream);
  const entries = (extract as unknown as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  /** end of the last member's data, padded to a block */
  let dataEnd = 0;
  try {
    for (;;) {
      let next: IteratorResult<TarEntry>;
      try {
        next = await entries.next();
      } catch (e) {
        throw tarError(e, label);
      }
      if (next.done) break;
      const entry = next.value;
      const { header } = entry;
      dataEnd = entry.offset + BLOCK + Math.ceil(header.size / BLOCK) * BLOCK;
      const parts = memberParts(header.name, label);
      if (!READABLE_TYPES.has(header.type)) {
        throw new IngestError(
          "UNSAFE_ENTRY",
          `${label}: member ${JSON.stringify(header.name)} is a ${header.type ?? "special entry"}${header.linkname ? ` to ${JSON.stringify(header.linkname)}` : ""}; archives may hold only regular files and folders`,
        );
      }
      const isDirectory = header.type === "directory";
      if (!isDirectory) checkFileParts(parts, header.name, label);
      if (isDirectory && header.size !== 0) {
        // tar-stream never delivers (nor ends) a folder's data, and would read it as headers.
        throw new IngestError(
          "BAD_ARCHIVE",
          `${label}: the folder ${JSON.stringify(header.name)} declares ${header.size} bytes of data; folders hold none`,
        );
      }
      let consumed = false;
      const what = `${label}: ${parts.join("/")}`;
      const chunks = async function* (): AsyncGenerator<Buffer> {
        if (consumed) throw new Error(`${what} was already read`);
        consumed = true;
        let got = 0;
        try {
          for await (const chunk of entry) {
            got += chunk.length;
            yield chunk;
          }
        } catch (e) {
          throw tarError(e, label);
        }
        if (got !== header.size) {
          throw new IngestError("TRUNCATED", `${what} holds ${got} of its ${header.size} bytes`);
        }
      };
      const member: ArchiveMember = {
        parts,
        path: parts.join("/"),
        isDirectory,
        size: header.size,
        async read(maxBytes: number) {
          checkMemberSize(header.size, maxBytes, what);
          const out = Buffer.allocUnsafe(header.size);
          let at = 0;
          for await (const chunk of chunks()) {
            chunk.copy(out, at);
            at += chunk.length;
          }
          return out;
        },
        chunks,
      };
      yield member;
      if (!consumed) {
        consumed = true;
        try {
          for await (const _ of entry) {
            // skipping: the data must still pass through the extractor
          }
        } catch (e) {
          throw tarError(e, label);
        }
      }
    }
    // Whatever follows the last member was parsed as zero blocks (anything else is an error
    // above); fewer than two of them means the archive was cut at a member boundary.
    if (guard.total - dataEnd < 2 * BLOCK) {
      throw new IngestError(
        "TRUNCATED",
        `${label}: the tar archive stops without its end-of-archive blocks; the upload is incomplete`,
      );
    }
  } finally {
    file.destroy();
    extract.destroy();
  }
}
