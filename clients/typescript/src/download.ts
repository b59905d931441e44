import { createHash } from "node:crypto";
import { createWriteStream, renameSync, rmSync } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { TrapdoorError } from "./errors.ts";
import { networkError } from "./transport.ts";

/**
 * Stream `url` into `file`, hashing on the way. The bytes land in `file.part` and are renamed
 * into place only when size and sha256 match what the API reported, so `file` is never a
 * truncated or corrupted model.
 */
export async function downloadVerified(
  url: string,
  file: string,
  expected: { sizeBytes: number; sha256: string },
  onBytes: (n: number) => void = () => {},
): Promise<{ sizeBytes: number; sha256: string }> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw networkError("cannot download the artifact", error);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new TrapdoorError("network", `the store answered HTTP ${response.status} to the download`);
  }
  const partial = `${file}.part`;
  const hash = createHash("sha256");
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(response.body as never),
      meter,
      createWriteStream(partial, { mode: 0o644 }),
    );
  } catch (error) {
    rmSync(partial, { force: true });
    if ((error as NodeJS.ErrnoException).syscall)
      throw new TrapdoorError("local", `cannot write ${file}: ${(error as Error).message}`);
    throw networkError("the download broke off", error);
  }
  const sha256 = hash.digest("hex");
  if (size !== expected.sizeBytes || sha256 !== expected.sha256) {
    rmSync(partial, { force: true });
    throw new TrapdoorError(
      "integrity",
      `downloaded ${size} bytes with sha256 ${sha256}; the API reported ${expected.sizeBytes} bytes with sha256 ${expected.sha256}; nothing was kept`,
    );
  }
  renameSync(partial, file);
  return { sizeBytes: size, sha256 };
}
