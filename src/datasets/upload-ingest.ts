/**
 * The background half of an upload: download the raw parts, check their sha256 and size against
 * what was declared, convert them to the canonical dataset, store it and mark the dataset READY
 * (or FAILED with a coded reason). Runs after `completeDatasetUpload`.
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { DataSource } from "typeorm";
import { type DatasetRow, markDatasetReady, setDatasetStatus } from "../db/datasets.ts";
import { keys } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { type CanonicalManifest, type DatasetFormat, IngestError, ingest } from "./ingest.ts";

/** What background dataset work needs. */
export interface DatasetProcessing {
  db: DataSource;
  store: ObjectStore;
  scratchDir: string;
  maxUploadBytes: number;
  /** Cap on one dataset's decoded size (TOO_LARGE). */
  maxDecodedBytes: number;
  /** Bytes the tenant may still store (QUOTA_EXCEEDED when the decoded dataset would not fit). */
  quotaBytesLeft(tenantId: string): Promise<number>;
  python?: string;
}

/** Verify and convert an uploaded dataset (VALIDATING → READY or FAILED). */
export async function ingestUpload(deps: DatasetProcessing, dataset: DatasetRow): Promise<void> {
  // One directory per attempt: a killed attempt's leftovers never meet the next one's files.
  const dir = join(deps.scratchDir, `ingest-${dataset.id}-${dataset.processing_attempt}`);
  try {
    await mkdir(dir, { recursive: true });
    const paths: Record<string, string> = {};
    for (const part of dataset.parts) {
      const path = join(dir, `part-${part.name}`);
      const got = await deps.store.downloadToFile(part.key, path);
      if (got.sha256 !== part.sha256)
        throw new IngestError(
          "SHA256_MISMATCH",
          `part ${part.name} has sha256 ${got.sha256}, ${part.sha256} was declared`,
        );
      if (got.sizeBytes !== part.sizeBytes)
        throw new IngestError(
          "SIZE_MISMATCH",
          `part ${part.name} is ${got.sizeBytes} bytes, ${part.sizeBytes} were declared`,
        );
      paths[part.name] = path;
    }
    const out = join(dir, "canonical");
    const manifest = await ingest(
      {
        format: dataset.format as DatasetFormat,
        parts: paths,
        classNames: dataset.class_names ?? undefined,
        numClasses: dataset.class_names?.length,
        options: dataset.ingest_options ?? undefined,
        maxBytes: deps.maxUploadBytes * 4,
        maxDecodedBytes: deps.maxDecodedBytes,
        quotaBytesLeft: await deps.quotaBytesLeft(dataset.tenant_id),
      },
      out,
    );
    await storeCanonical(deps, dataset, out, manifest);
  } catch (error) {
    const reason =
      error instanceof IngestError
        ? `${error.code}: ${error.message}`
        : `ingest failed: ${error instanceof Error ? error.message : String(error)}`;
    await setDatasetStatus(deps.db, dataset.id, ["VALIDATING"], "FAILED", reason);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Store the canonical files written in `dir` under the dataset's prefix and mark it READY. */
export async function storeCanonical(
  deps: DatasetProcessing,
  dataset: DatasetRow,
  dir: string,
  manifest: CanonicalManifest,
): Promise<void> {
  for (const file of await readdir(dir)) {
    await deps.store.putFile(keys.datasetCanonical(dataset.tenant_id, dataset.id, file), join(dir, file));
  }
  // Deleted meanwhile: what was just stored goes too (deletion already removed the rest).
  if (!(await markDatasetReady(deps.db, dataset.id, manifest)))
    await deps.store.deletePrefix(keys.datasetPrefix(dataset.tenant_id, dataset.id));
}
