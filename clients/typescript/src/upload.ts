import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { TrapdoorError } from "./errors.ts";
import { networkError } from "./transport.ts";

/** A local file to upload as one part of a dataset; `part` null: the format's only part. */
export interface LocalPart {
  part: string | null;
  path: string;
  sizeBytes: number;
  sha256: string;
}

/** A signed upload URL as createDatasetUpload returns it. */
export interface UploadTarget {
  part: string;
  url: string;
  method: string;
  headers: Record<string, string>;
  expiresAt: string;
}

/** Size and sha256 of a local file, streamed (`onBytes` sees the progress). */
export async function describeFile(path: string, onBytes: (n: number) => void = () => {}) {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new Error("not a regular file");
    size = stat.size;
  } catch (error) {
    throw new TrapdoorError("local", `cannot read ${path}: ${(error as Error).message}`);
  }
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    onBytes((chunk as Buffer).length);
  }
  return { sizeBytes: size, sha256: hash.digest("hex") };
}

/** What a resumed run needs: the dataset, its signed URLs, and the parts already stored. */
export interface UploadState {
  datasetId: string;
  targets: UploadTarget[];
  uploaded: string[];
}

/**
 * Upload progress kept on disk (next to the client config, mode 0600: the URLs are credentials
 * until they expire), keyed by a fingerprint of the endpoint and the files' hashes. Running the
 * same upload again continues where it stopped, skipping the parts already stored.
 */
export class UploadStateStore {
  constructor(private readonly dir: string) {}

  static fingerprint(value: unknown): string {
    return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 32);
  }

  private path(fingerprint: string): string {
    return join(this.dir, `${fingerprint}.json`);
  }

  load(fingerprint: string): UploadState | null {
    try {
      return JSON.parse(readFileSync(this.path(fingerprint), "utf8")) as UploadState;
    } catch {
      return null;
    }
  }

  save(fingerprint: string, state: UploadState): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileSync(this.path(fingerprint), JSON.stringify(state), { mode: 0o600 });
  }

  remove(fingerprint: string): void {
    rmSync(this.path(fingerprint), { force: true });
  }
}

/** Whether every URL in `targets` stays valid for at least `marginMs`. */
export function stillValid(targets: UploadTarget[], marginMs = 60_000): boolean {
  return targets.every((t) => Date.parse(t.expiresAt) - Date.now() > marginMs);
}

const PUT_RETRY_DELAYS_MS = [500, 2000, 5000];

/**
 * Stream a file to its signed URL. Network errors and 5xx answers are retried (the whole part:
 * stores keep no partial parts); 409 means the store already holds this part (a previous attempt
 * landed though its answer was lost), which completeDatasetUpload then checks by size and ingest
 * by sha256.
 */
export async function putPart(
  target: UploadTarget,
  file: LocalPart,
  onBytes: (delta: number) => void,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        sent += chunk.length;
        onBytes(chunk.length);
        callback(null, chunk);
      },
    });
    let failure: TrapdoorError;
    try {
      const response = await fetch(target.url, {
        method: target.method,
        headers: target.headers,
        body: Readable.toWeb(createReadStream(file.path).pipe(counter)) as ReadableStream,
        duplex: "half",
      } as RequestInit);
      await response.body?.cancel();
      if (response.ok || response.status === 409) return;
      const message = `the store refused part ${target.part} (${file.path}): HTTP ${response.status}`;
      if (response.status < 500 && response.status !== 408 && response.status !== 429)
        throw new TrapdoorError("network", message);
      failure = new TrapdoorError("network", message);
    } catch (error) {
      if (error instanceof TrapdoorError) throw error;
      failure = networkError(`upload of part ${target.part} (${file.path}) failed`, error);
    }
    onBytes(-sent);
    const delay = PUT_RETRY_DELAYS_MS[attempt];
    if (delay === undefined) throw failure;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
