import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { DatasetRow } from "../db/datasets.ts";
import { CANONICAL_FILES, keys, OPTIONAL_CANONICAL_FILES } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";

/**
 * Download a dataset's canonical files into `dir` (the trainer reads them there), checking each
 * against the sha256 its manifest recorded; optional files (poison_mask.npy) only where stored.
 */
export async function stageCanonical(store: ObjectStore, dataset: DatasetRow, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const expected = ((dataset.manifest ?? {}) as { sha256?: Record<string, string> }).sha256 ?? {};
  const required = new Set<string>(CANONICAL_FILES);
  for (const file of [...CANONICAL_FILES, ...OPTIONAL_CANONICAL_FILES]) {
    const key = keys.datasetCanonical(dataset.tenant_id, dataset.id, file);
    if (!required.has(file) && !(await store.stat(key))) continue;
    const got = await store.downloadToFile(key, join(dir, file));
    if (expected[file] && expected[file] !== got.sha256)
      throw new Error(`${file} of dataset ${dataset.id} does not match its manifest`);
  }
  return dir;
}
